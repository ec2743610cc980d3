//! Tilt angles of a tilt series: IMOD `.tlt` (refined by alignment) and `.rawtlt` (as acquired).
//!
//! Format: one angle in degrees per line, e.g. `  -60.00`; blank lines are ignored.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Largest |angle| accepted, in degrees: anything beyond is junk, not a tilt.
const MAX_ABS_ANGLE: f32 = 180.0;

/// Reads a `.tlt` / `.rawtlt` file: one angle (degrees) per line, blank lines ignored.
/// Errors name the file and, for junk, the 1-based line: a line that is not exactly one number,
/// a non-finite value, |angle| > 180, or a file with no angles at all.
pub fn read_tilt_angles(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_tilt_angles(path, &bytes)
}

/// [`read_tilt_angles`] on the file's bytes; `path` is only used in error messages.
pub fn parse_tilt_angles(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::format(path, format!("not a text file of tilt angles: {e}")))?;
    let mut angles = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| Error::format(path, format!("line {}: {why}: '{line}'", i + 1));
        let mut tokens = line.split_whitespace();
        let (Some(tok), None) = (tokens.next(), tokens.next()) else {
            return Err(bad("expected one tilt angle per line"));
        };
        let angle: f32 = tok.parse().map_err(|_| bad("not a number"))?;
        if !angle.is_finite() || angle.abs() > MAX_ABS_ANGLE {
            return Err(bad(
                "tilt angle must be finite and within [-180, 180] degrees",
            ));
        }
        angles.push(angle);
    }
    if angles.is_empty() {
        return Err(Error::format(path, "no tilt angles in the file"));
    }
    Ok(angles)
}

/// The tilt-angle file beside a stack: for `dir/NAME.st` (or `NAME.mrc`, any extension) the
/// first existing of `dir/NAME.tlt` and `dir/NAME.rawtlt` — `.tlt` first, since IMOD's alignment
/// refines it from the raw angles.
pub fn tilt_file_for(stack: &Path) -> Option<PathBuf> {
    ["tlt", "rawtlt"]
        .iter()
        .map(|ext| stack.with_extension(ext))
        .find(|p| p.as_path() != stack && p.is_file())
}
