//! One string column of a Parquet file (as pyarrow, pandas, Spark or Hugging Face datasets write
//! them), read row by row: one row group in memory at a time, only the chosen column decoded.

use crate::{PtError, Result};
use parquet::basic::{Repetition, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field;
use parquet::schema::types::Type;
use std::path::Path;

pub fn is_parquet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// A Parquet file's row count and its top-level columns, each with whether it holds one string
/// per row (what `text_field` may name).
pub fn parquet_columns(path: &Path) -> Result<(u64, Vec<(String, bool)>)> {
    let file = std::fs::File::open(path).map_err(|e| PtError::io(path, e))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| PtError::io(path, format!("not a readable Parquet file ({e})")))?;
    let meta = reader.metadata().file_metadata();
    let columns = meta.schema_descr().root_schema().get_fields().iter().map(|f| (f.name().to_string(), is_string(f)));
    Ok((meta.num_rows().max(0) as u64, columns.collect()))
}

fn is_string(field: &Type) -> bool {
    field.is_primitive()
        && field.get_physical_type() == PhysicalType::BYTE_ARRAY
        && field.get_basic_info().repetition() != Repetition::REPEATED
}

/// The rows of one column, in file order.
pub struct ParquetColumn {
    rows: RowIter<'static>,
}

impl ParquetColumn {
    /// Opens `column` of `path`; an error names the file and, for a wrong name, the columns it has.
    pub fn open(path: &Path, column: &str) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| PtError::io(path, e))?;
        let reader = SerializedFileReader::new(file)
            .map_err(|e| PtError::io(path, format!("not a readable Parquet file ({e})")))?;
        let schema = reader.metadata().file_metadata().schema_descr().root_schema().clone();
        let Some(field) = schema.get_fields().iter().find(|f| f.name() == column).cloned() else {
            let names: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
            return Err(PtError::config(format!(
                "{}: no column '{column}' (set text_field to one of: {})",
                path.display(),
                names.join(", ")
            )));
        };
        if !is_string(&field) {
            return Err(PtError::config(format!(
                "{}: column '{column}' does not hold one string per row; set text_field to a string column",
                path.display()
            )));
        }
        let projection = Type::group_type_builder(schema.name())
            .with_fields(vec![field])
            .build()
            .map_err(|e| PtError::io(path, e.to_string()))?;
        let rows = RowIter::from_file_into(Box::new(reader))
            .project(Some(projection))
            .map_err(|e| PtError::io(path, e.to_string()))?;
        Ok(ParquetColumn { rows })
    }

    /// The next row's bytes (empty for a null), or `None` after the last row.
    pub fn next_row(&mut self, path: &Path, out: &mut Vec<u8>) -> Result<Option<()>> {
        let Some(row) = self.rows.next() else { return Ok(None) };
        let row = row.map_err(|e| PtError::io(path, format!("reading a row ({e})")))?;
        out.clear();
        match row.get_column_iter().next().map(|(_, f)| f) {
            Some(Field::Str(s)) => out.extend_from_slice(s.as_bytes()),
            Some(Field::Bytes(b)) => out.extend_from_slice(b.data()),
            _ => {} // null
        }
        Ok(Some(()))
    }
}
