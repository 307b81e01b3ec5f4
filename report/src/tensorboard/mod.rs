//! Native TensorBoard event files: a writer for scalars and a reader that checks CRCs.

mod proto;
mod reader;
mod record;
mod truncate;
mod writer;

pub use reader::{event_files, read_scalars, Scalar};
pub use writer::EventWriter;

pub(crate) use truncate::truncate_event_files;
