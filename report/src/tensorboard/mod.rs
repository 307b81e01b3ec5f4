//! Native TensorBoard event files: a writer for scalars, pictures and hyperparameters, and a
//! reader of scalars that checks CRCs.

mod proto;
mod reader;
mod record;
mod truncate;
mod writer;

pub use proto::{HParam, Histogram};
pub use reader::{event_files, read_scalars, Scalar};
pub use writer::EventWriter;

pub(crate) use truncate::truncate_event_files;
