//! The embedded font: plotters' `ab_glyph` text backend has no fonts of its own and this crate
//! must not depend on system fonts (servers and CI machines often have none), so DejaVu Sans is
//! compiled in and registered as plotters' "sans-serif" family on first use.

use crate::error::{ReportError, Result};
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

/// The font family every plot uses.
pub(crate) const FAMILY: &str = "sans-serif";

pub(crate) fn ensure_registered() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FAMILY, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::InvalidInput("the embedded DejaVu Sans font could not be parsed (corrupt build?)".into()))
    }
}
