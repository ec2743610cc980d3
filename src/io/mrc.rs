//! MRC / MRC2014 stacks and volumes (`.mrc`, `.mrcs`, `.st`, `.ali`, `.rec`, `.map`, `.ccp4`,
//! `.preali`, any of them `.gz` or `.bz2` compressed, or any name whose first 1024 bytes are an
//! MRC header with 'MAP '): header, extended header, modes 0, 1, 2, 6, 12; reading and writing.
//!
//! File layout (MRC2014, <https://www.ccpem.ac.uk/mrc_format/mrc2014.php>):
//! `[1024-byte header][nsymbt bytes extended header][nx*ny*nz voxels]`, voxels stored with x
//! fastest, then y, then z. Header words used here (byte offsets, 4-byte words):
//!
//! | offset | field            | offset  | field                       |
//! |--------|------------------|---------|-----------------------------|
//! | 0..12  | nx, ny, nz (i32) | 92      | nsymbt (ext. header bytes)  |
//! | 12     | mode (i32)       | 104     | exttyp (4 chars)            |
//! | 16..28 | nxstart.. (i32)  | 108     | nversion (20140)            |
//! | 28..40 | mx, my, mz (i32) | 152/156 | imodStamp / imodFlags       |
//! | 40..52 | cella (f32, Å)   | 196..208| origin x, y, z (f32, Å)     |
//! | 64..76 | mapc, mapr, maps | 208     | 'MAP '                      |
//! | 76..88 | dmin, dmax, dmean| 212     | machine stamp               |
//! | 88     | ispg             | 216     | rms                         |
//! |        |                  | 220/224 | nlabl / 10 x 80-char labels |
//!
//! Modes: 0 = 8-bit, 1 = int16, 2 = float32, 6 = uint16, 12 = float16. Every mode is returned as
//! f32 (exact for all of them).
//!
//! Mode 0 is signed (-128..127) in MRC2014 and `mrcfile`, but IMOD writes unsigned bytes. IMOD's
//! rule (`mrc_format.txt`, "imodStamp"/"imodFlags"; Bio-Formats follows it too): when the word at
//! byte 152 is the IMOD stamp 1146047817, bit 0 of the flags at byte 156 says "bytes are
//! signed"; clear means unsigned (0..255). Without the stamp the MRC2014 rule (signed) applies.
//! [`MrcHeader::signed_bytes`] holds the decision; callers may override it
//! (`--mrc-signed-bytes yes|no`).
//!
//! Compression (`.gz`, `.bz2`, chosen by the file's magic bytes, not its name) is undone by the
//! `flate2` and `bzip2` crates. A compressed file cannot be seeked: [`MrcReader::open`] keeps
//! its decompressed data in memory.
//!
//! Byte order comes from the machine stamp (first byte 0x44 little-endian, 0x11 big-endian).
//! An unknown stamp (old files) falls back to little-endian when that gives a valid mode and
//! plausible dimensions, else big-endian under the same test, else the file is refused.
//! 'MAP ' at 208 is checked when any of its bytes are non-zero (pre-2000 files leave it empty).
//!
//! Array layout: `read_volume` returns `[nz, ny, nx]` and `read_slice(z)` returns `[ny, nx]`,
//! exactly `mrcfile.open(p).data` and `.data[z]` (row index = MRC y, column index = MRC x).
//! `mapc/mapr/maps` axis permutations are not applied (mrcfile does not apply them either).
//!
//! Safety against corrupt headers: the file size must be at least
//! `1024 + nsymbt + nx*ny*nz*bytes_per_voxel` (computed with overflow checks) before anything
//! of that size is allocated. Bytes after the data are allowed (mrcfile warns, IMOD reads such
//! files): their count is [`MrcHeader::trailing_bytes`], and the CLI prints a one-line warning.

use crate::error::{Error, Result};
use ndarray::{Array2, Array3, ArrayView3, Axis};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Size of the main MRC header in bytes.
pub const HEADER_LEN: usize = 1024;
/// Largest dimension we accept on any axis (a sanity bound on header values).
pub const MAX_DIM: usize = 1 << 20;

/// File extensions that are MRC files (lower case).
pub const MRC_EXTENSIONS: [&str; 8] = ["mrc", "mrcs", "st", "ali", "rec", "map", "ccp4", "preali"];

/// IMOD's stamp at byte 152: the flags at byte 156 are valid (`mrc_format.txt`).
pub const IMOD_STAMP: i32 = 1146047817;

/// Lower-case extension of a path.
fn ext_of(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

/// True when the path ends with an MRC extension (case-insensitive), also followed by `.gz` or
/// `.bz2` (`emd_1234.map.gz`).
pub fn is_mrc_path(path: &Path) -> bool {
    let Some(ext) = ext_of(path) else {
        return false;
    };
    if ext == "gz" || ext == "bz2" {
        let inner = Path::new(path.file_stem().unwrap_or_default());
        return ext_of(inner).is_some_and(|e| MRC_EXTENSIONS.contains(&e.as_str()));
    }
    MRC_EXTENSIONS.contains(&ext.as_str())
}

/// True when the file is an MRC file: an MRC extension ([`is_mrc_path`]), or, whatever its
/// name, (decompressed) first 1024 bytes that are a valid MRC header with 'MAP ' at byte 208.
pub fn is_mrc_file(path: &Path) -> bool {
    if is_mrc_path(path) {
        return true;
    }
    let Ok(comp) = compression_of(path) else {
        return false;
    };
    let Ok(mut r) = open_stream(path, comp) else {
        return false;
    };
    let mut b = [0u8; HEADER_LEN];
    if r.read_exact(&mut b).is_err() {
        return false;
    }
    (&b[208..212] == b"MAP " || &b[208..212] == b"MAP\0") && parse_header(path, &b).is_ok()
}

/// How a file is compressed, from its first bytes (gzip `1f 8b`, bzip2 `BZh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
}

impl Compression {
    /// "gzip", "bzip2" or "none".
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// The compression of the file at `path`, from its magic bytes.
pub fn compression_of(path: &Path) -> Result<Compression> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut m = [0u8; 3];
    let mut n = 0;
    while n < 3 {
        match f.read(&mut m[n..]).map_err(|e| Error::io(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(if n >= 2 && m[..2] == [0x1f, 0x8b] {
        Compression::Gzip
    } else if n == 3 && &m == b"BZh" {
        Compression::Bzip2
    } else {
        Compression::None
    })
}

/// The file's decompressed bytes as a stream.
fn open_stream(path: &Path, comp: Compression) -> Result<Box<dyn Read>> {
    let f = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?);
    Ok(match comp {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(f)),
    })
}

/// A read error on a decompressed stream: the file and "cannot decompress (gzip)".
fn stream_err(path: &Path, comp: Compression, e: std::io::Error) -> Error {
    if comp == Compression::None {
        Error::io(path, e)
    } else {
        Error::format(path, format!("cannot decompress ({}): {e}", comp.name()))
    }
}

/// The parts of an MRC header that cryodet uses.
#[derive(Clone, Debug, PartialEq)]
pub struct MrcHeader {
    /// Columns (fastest axis), rows, sections.
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
    /// Data mode: 0 8-bit (see `signed_bytes`), 1 int16, 2 float32, 6 uint16, 12 float16.
    pub mode: i32,
    /// Mode 0 only: bytes are signed (-128..127) rather than unsigned (0..255); IMOD's flag
    /// when IMOD's stamp is present, else true (MRC2014). See the module doc.
    pub signed_bytes: bool,
    /// IMOD's flags (byte 156) when IMOD's stamp is at byte 152.
    pub imod_flags: Option<i32>,
    /// Index of the first column, row and section (nxstart, nystart, nzstart).
    pub nstart: [i32; 3],
    /// Origin in Ångström (x, y, z), header bytes 196..208.
    pub origin: [f32; 3],
    /// Bytes after the voxel data (0 for a well-formed file).
    pub trailing_bytes: u64,
    /// Compression of the file (magic bytes).
    pub compression: Compression,
    /// Voxel size in Ångström per axis (x, y, z): `cella / (mx, my, mz)`, 0 when m is 0.
    pub voxel_size: [f32; 3],
    /// Sampling grid size (mx, my, mz).
    pub grid: [i32; 3],
    /// Bytes of extended header after the 1024-byte main header (`nsymbt`).
    pub ext_header_len: usize,
    /// Extended header type, e.g. "FEI1", "SERI"; "" when unset or not printable ASCII.
    pub exttyp: String,
    /// Byte order of the file.
    pub little_endian: bool,
    /// Space group: 0 image stack, 1 volume, 401+ volume stack.
    pub ispg: i32,
    /// Header statistics as stored (not recomputed).
    pub dmin: f32,
    pub dmax: f32,
    pub dmean: f32,
    pub rms: f32,
    /// MRC format version (20140 for MRC2014, 0 for older files).
    pub nversion: i32,
    /// Text labels (trimmed; blank ones left out), at most 10.
    pub labels: Vec<String>,
}

impl MrcHeader {
    /// Bytes per voxel for this header's mode.
    pub fn bytes_per_voxel(&self) -> usize {
        mode_bytes(self.mode).unwrap_or(0)
    }
    /// Byte offset of the first voxel.
    pub fn data_offset(&self) -> usize {
        HEADER_LEN + self.ext_header_len
    }
    /// Number of bytes of one z-section.
    pub fn slice_bytes(&self) -> usize {
        self.nx * self.ny * self.bytes_per_voxel()
    }
    /// Human-readable name of the mode.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            0 if !self.signed_bytes => "uint8",
            0 => "int8",
            1 => "int16",
            2 => "float32",
            6 => "uint16",
            12 => "float16",
            _ => "unsupported",
        }
    }
}

/// Bytes per voxel of a supported mode.
fn mode_bytes(mode: i32) -> Option<usize> {
    match mode {
        0 => Some(1),
        1 | 6 | 12 => Some(2),
        2 => Some(4),
        _ => None,
    }
}

/// Reads 4-byte words of the header in the file's byte order.
struct Words<'a> {
    b: &'a [u8; HEADER_LEN],
    little: bool,
}

impl Words<'_> {
    fn bytes(&self, off: usize) -> [u8; 4] {
        [
            self.b[off],
            self.b[off + 1],
            self.b[off + 2],
            self.b[off + 3],
        ]
    }
    fn i32(&self, off: usize) -> i32 {
        let b = self.bytes(off);
        if self.little {
            i32::from_le_bytes(b)
        } else {
            i32::from_be_bytes(b)
        }
    }
    fn f32(&self, off: usize) -> f32 {
        f32::from_bits(self.i32(off) as u32)
    }
}

/// Plausible main-header values under a byte order (used when the machine stamp is unknown).
fn plausible(w: &Words) -> bool {
    let dims_ok = (0..3).all(|i| {
        let n = w.i32(4 * i);
        n > 0 && (n as usize) <= MAX_DIM
    });
    dims_ok && mode_bytes(w.i32(12)).is_some() && w.i32(92) >= 0
}

/// Parse the 1024-byte header (no file-size check; see [`read_header`]).
pub fn parse_header(path: &Path, b: &[u8; HEADER_LEN]) -> Result<MrcHeader> {
    let stamp = [b[212], b[213]];
    let little = match stamp {
        [0x44, 0x44] | [0x44, 0x41] => true,
        [0x11, 0x11] => false,
        _ => {
            if plausible(&Words { b, little: true }) {
                true
            } else if plausible(&Words { b, little: false }) {
                false
            } else {
                return Err(Error::format(
                    path,
                    format!(
                        "not an MRC file: unknown machine stamp {:02x} {:02x} and no byte order \
                         gives a valid header",
                        stamp[0], stamp[1]
                    ),
                ));
            }
        }
    };
    let w = Words { b, little };
    let map = &b[208..212];
    if map != b"MAP " && map != b"MAP\0" && map.iter().any(|&c| c != 0) {
        return Err(Error::format(
            path,
            format!("not an MRC file: bytes 208..212 are {map:?}, expected 'MAP '"),
        ));
    }
    let dim = |i: usize, name: &str| -> Result<usize> {
        let n = w.i32(4 * i);
        if n <= 0 || n as usize > MAX_DIM {
            return Err(Error::format(
                path,
                format!("invalid MRC header: {name} = {n}"),
            ));
        }
        Ok(n as usize)
    };
    let (nx, ny, nz) = (dim(0, "nx")?, dim(1, "ny")?, dim(2, "nz")?);
    let mode = w.i32(12);
    if mode_bytes(mode).is_none() {
        return Err(Error::format(
            path,
            format!("unsupported MRC mode {mode} (supported: 0 int8, 1 int16, 2 float32, 6 uint16, 12 float16)"),
        ));
    }
    let nsymbt = w.i32(92);
    if nsymbt < 0 {
        return Err(Error::format(
            path,
            format!("invalid MRC header: nsymbt = {nsymbt}"),
        ));
    }
    let grid = [w.i32(28), w.i32(32), w.i32(36)];
    let cella = [w.f32(40), w.f32(44), w.f32(48)];
    let mut voxel_size = [0.0f32; 3];
    for i in 0..3 {
        if grid[i] != 0 {
            voxel_size[i] = cella[i] / grid[i] as f32;
        }
    }
    let raw_type = &b[104..108];
    let exttyp = if raw_type
        .iter()
        .all(|&c| c == 0 || c.is_ascii_graphic() || c == b' ')
    {
        String::from_utf8_lossy(raw_type)
            .trim_matches(['\0', ' '])
            .to_string()
    } else {
        String::new()
    };
    let nlabl = w.i32(220).clamp(0, 10) as usize;
    let labels = (0..nlabl)
        .map(|i| {
            String::from_utf8_lossy(&b[224 + 80 * i..224 + 80 * (i + 1)])
                .trim_end_matches(['\0', ' '])
                .to_string()
        })
        .filter(|l: &String| !l.trim().is_empty())
        .collect();
    let imod_flags = (w.i32(152) == IMOD_STAMP).then(|| w.i32(156));
    Ok(MrcHeader {
        nx,
        ny,
        nz,
        mode,
        signed_bytes: imod_flags.is_none_or(|f| f & 1 != 0),
        imod_flags,
        nstart: [w.i32(16), w.i32(20), w.i32(24)],
        origin: [w.f32(196), w.f32(200), w.f32(204)],
        trailing_bytes: 0,
        compression: Compression::None,
        voxel_size,
        grid,
        ext_header_len: nsymbt as usize,
        exttyp,
        little_endian: little,
        ispg: w.i32(88),
        dmin: w.f32(76),
        dmax: w.f32(80),
        dmean: w.f32(84),
        rms: w.f32(216),
        nversion: w.i32(108),
        labels,
    })
}

/// Read and validate the header of an MRC file, including that the file holds at least
/// `1024 + nsymbt + nx*ny*nz*bytes_per_voxel` bytes (more: [`MrcHeader::trailing_bytes`]).
/// A compressed file is decompressed once to count its bytes (nothing is kept).
pub fn read_header(path: &Path) -> Result<MrcHeader> {
    let comp = compression_of(path)?;
    if comp != Compression::None {
        let mut r = open_stream(path, comp)?;
        let (h, mut len) = read_stream_header(path, comp, &mut r)?;
        len +=
            std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| stream_err(path, comp, e))?;
        let mut h = h;
        h.trailing_bytes = check_size(path, &h, len)?;
        return Ok(h);
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    check_min_len(path, file_len)?;
    let mut b = [0u8; HEADER_LEN];
    f.read_exact(&mut b).map_err(|e| Error::io(path, e))?;
    let mut h = parse_header(path, &b)?;
    h.trailing_bytes = check_size(path, &h, file_len)?;
    Ok(h)
}

/// The header of a decompressed stream and the number of bytes read so far.
fn read_stream_header(
    path: &Path,
    comp: Compression,
    r: &mut dyn Read,
) -> Result<(MrcHeader, u64)> {
    let mut b = [0u8; HEADER_LEN];
    let mut n = 0;
    while n < HEADER_LEN {
        match r.read(&mut b[n..]).map_err(|e| stream_err(path, comp, e))? {
            0 => break,
            k => n += k,
        }
    }
    check_min_len(path, n as u64)?;
    let mut h = parse_header(path, &b)?;
    h.compression = comp;
    Ok((h, n as u64))
}

/// The one-line warning for trailing bytes, `None` for a well-formed file.
pub fn trailing_warning(path: &Path, h: &MrcHeader) -> Option<String> {
    (h.trailing_bytes > 0).then(|| {
        format!(
            "warning: {}: {} byte(s) after the voxel data ignored",
            path.display(),
            h.trailing_bytes
        )
    })
}

/// A file shorter than the main header is not an MRC file.
fn check_min_len(path: &Path, file_len: u64) -> Result<()> {
    if file_len < HEADER_LEN as u64 {
        return Err(Error::format(
            path,
            format!("not an MRC file: {file_len} bytes, shorter than the 1024-byte header"),
        ));
    }
    Ok(())
}

/// The file size must be at least `1024 + nsymbt + nx*ny*nz*bytes_per_voxel` (computed with
/// overflow checks): this runs before anything of the header's claimed size is allocated.
/// Returns the number of bytes after the data.
pub fn check_size(path: &Path, h: &MrcHeader, file_len: u64) -> Result<u64> {
    let expected = (h.nx as u64)
        .checked_mul(h.ny as u64)
        .and_then(|v| v.checked_mul(h.nz as u64))
        .and_then(|v| v.checked_mul(h.bytes_per_voxel() as u64))
        .and_then(|v| v.checked_add((HEADER_LEN + h.ext_header_len) as u64));
    match expected {
        Some(e) if e <= file_len => Ok(file_len - e),
        Some(e) => Err(Error::format(
            path,
            format!(
                "MRC size mismatch: header says {}x{}x{} voxels of mode {} + {} bytes of extended \
                 header = {e} bytes, the file has {file_len} bytes (truncated?){}",
                h.nx,
                h.ny,
                h.nz,
                h.mode,
                h.ext_header_len,
                if h.compression == Compression::None {
                    String::new()
                } else {
                    format!(" after {} decompression", h.compression.name())
                }
            ),
        )),
        None => Err(Error::format(
            path,
            format!(
                "MRC header claims an impossible size {}x{}x{}",
                h.nx, h.ny, h.nz
            ),
        )),
    }
}

/// Parse a whole MRC file held in memory: header, size check, every section as `[nz, ny, nx]`
/// (the same checks and values as [`read_header`] + [`read_volume`]; `path` is only used in
/// error messages). Used by the fuzzer and for small files.
pub fn parse_mrc_bytes(path: &Path, bytes: &[u8]) -> Result<(MrcHeader, Array3<f32>)> {
    check_min_len(path, bytes.len() as u64)?;
    let b: &[u8; HEADER_LEN] = bytes[..HEADER_LEN]
        .try_into()
        .expect("length checked above");
    let mut h = parse_header(path, b)?;
    h.trailing_bytes = check_size(path, &h, bytes.len() as u64)?;
    let mut out = Array3::<f32>::zeros((h.nz, h.ny, h.nx));
    decode_into(
        &h,
        &bytes[h.data_offset()..],
        out.as_slice_mut().expect("fresh array is contiguous"),
    );
    Ok((h, out))
}

/// Decode raw voxels of `h.mode` into f32.
fn decode_into(h: &MrcHeader, raw: &[u8], out: &mut [f32]) {
    let le = h.little_endian;
    match h.mode {
        0 if h.signed_bytes => out
            .iter_mut()
            .zip(raw)
            .for_each(|(o, &b)| *o = b as i8 as f32),
        0 => out.iter_mut().zip(raw).for_each(|(o, &b)| *o = b as f32),
        1 => out.iter_mut().zip(raw.chunks_exact(2)).for_each(|(o, c)| {
            let b = [c[0], c[1]];
            *o = if le {
                i16::from_le_bytes(b)
            } else {
                i16::from_be_bytes(b)
            } as f32
        }),
        6 => out.iter_mut().zip(raw.chunks_exact(2)).for_each(|(o, c)| {
            let b = [c[0], c[1]];
            *o = if le {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            } as f32
        }),
        12 => out.iter_mut().zip(raw.chunks_exact(2)).for_each(|(o, c)| {
            let b = [c[0], c[1]];
            let bits = if le {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            };
            *o = half::f16::from_bits(bits).to_f32()
        }),
        2 => out.iter_mut().zip(raw.chunks_exact(4)).for_each(|(o, c)| {
            let b = [c[0], c[1], c[2], c[3]];
            *o = if le {
                f32::from_le_bytes(b)
            } else {
                f32::from_be_bytes(b)
            }
        }),
        _ => unreachable!("mode validated by parse_header"),
    }
}

/// An open MRC file: its header and, for a compressed file, its decompressed voxel bytes
/// (a plain file is read one section at a time by seeking).
pub struct MrcReader {
    path: std::path::PathBuf,
    /// The header; `signed_bytes` may be changed before reading (an override).
    pub header: MrcHeader,
    data: Option<Vec<u8>>,
}

impl MrcReader {
    /// Open and validate `path` ([`read_header`]'s checks); a compressed file is decompressed
    /// here, once.
    pub fn open(path: &Path) -> Result<MrcReader> {
        let comp = compression_of(path)?;
        if comp == Compression::None {
            return Ok(MrcReader {
                path: path.to_path_buf(),
                header: read_header(path)?,
                data: None,
            });
        }
        let mut r = open_stream(path, comp)?;
        let (mut h, mut len) = read_stream_header(path, comp, &mut r)?;
        let mut ext = Vec::new();
        (&mut r)
            .take(h.ext_header_len as u64)
            .read_to_end(&mut ext)
            .map_err(|e| stream_err(path, comp, e))?;
        len += ext.len() as u64;
        let want = (h.slice_bytes() as u64).saturating_mul(h.nz as u64);
        // No allocation of the claimed size: the vector grows with the data actually present.
        let mut data = Vec::new();
        (&mut r)
            .take(want)
            .read_to_end(&mut data)
            .map_err(|e| stream_err(path, comp, e))?;
        len += data.len() as u64;
        len +=
            std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| stream_err(path, comp, e))?;
        h.trailing_bytes = check_size(path, &h, len)?;
        Ok(MrcReader {
            path: path.to_path_buf(),
            header: h,
            data: Some(data),
        })
    }

    /// Override the mode-0 sign rule (`None` keeps the header's decision).
    pub fn set_signed_bytes(&mut self, signed: Option<bool>) {
        if let Some(s) = signed {
            self.header.signed_bytes = s;
        }
    }

    /// Section `z` as `[ny, nx]` (= `mrcfile.open(path).data[z]`).
    pub fn slice(&self, z: usize) -> Result<Array2<f32>> {
        match &self.data {
            None => read_slice(&self.path, &self.header, z),
            Some(d) => {
                check_z(&self.path, &self.header, z)?;
                let n = self.header.slice_bytes();
                let mut out = Array2::<f32>::zeros((self.header.ny, self.header.nx));
                decode_into(
                    &self.header,
                    &d[z * n..(z + 1) * n],
                    out.as_slice_mut().expect("fresh array is contiguous"),
                );
                Ok(out)
            }
        }
    }
}

fn check_z(path: &Path, header: &MrcHeader, z: usize) -> Result<()> {
    if z >= header.nz {
        return Err(Error::invalid(format!(
            "{}: slice {z} out of range (the stack has {} sections)",
            path.display(),
            header.nz
        )));
    }
    Ok(())
}

/// Read section `z` as `[ny, nx]` (= `mrcfile.open(path).data[z]`). `header` must come from
/// [`read_header`] on the same file. Only that section's bytes are read (a compressed file is
/// decompressed up to that section; use [`MrcReader`] to read many sections).
pub fn read_slice(path: &Path, header: &MrcHeader, z: usize) -> Result<Array2<f32>> {
    check_z(path, header, z)?;
    let n = header.slice_bytes();
    let mut raw = vec![0u8; n];
    if header.compression != Compression::None {
        let comp = header.compression;
        let mut r = open_stream(path, comp)?;
        let skip = (header.data_offset() + z * n) as u64;
        std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
            .map_err(|e| stream_err(path, comp, e))?;
        r.read_exact(&mut raw)
            .map_err(|e| stream_err(path, comp, e))?;
    } else {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.seek(SeekFrom::Start((header.data_offset() + z * n) as u64))
            .map_err(|e| Error::io(path, e))?;
        f.read_exact(&mut raw).map_err(|e| Error::io(path, e))?;
    }
    let mut out = Array2::<f32>::zeros((header.ny, header.nx));
    decode_into(
        header,
        &raw,
        out.as_slice_mut().expect("fresh array is contiguous"),
    );
    Ok(out)
}

/// Read the whole file as `[nz, ny, nx]` (= `mrcfile.open(path).data`).
pub fn read_volume(path: &Path) -> Result<Array3<f32>> {
    let r = MrcReader::open(path)?;
    let h = &r.header;
    let mut out = Array3::<f32>::zeros((h.nz, h.ny, h.nx));
    for (z, mut section) in out.axis_iter_mut(Axis(0)).enumerate() {
        section.assign(&r.slice(z)?);
    }
    Ok(out)
}

/// Geometry written into an MRC header: voxel size per axis (Å), origin (Å) and start indices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MrcGeometry {
    pub voxel_size: [f32; 3],
    pub origin: [f32; 3],
    pub nstart: [i32; 3],
}

impl MrcGeometry {
    /// Cubic voxels of `voxel_size` Å, origin 0, start indices 0.
    pub fn isotropic(voxel_size: f32) -> MrcGeometry {
        MrcGeometry {
            voxel_size: [voxel_size; 3],
            origin: [0.0; 3],
            nstart: [0; 3],
        }
    }
    /// The geometry of an input file, to write a volume that overlays it (label volumes).
    pub fn of_header(h: &MrcHeader) -> MrcGeometry {
        MrcGeometry {
            voxel_size: h.voxel_size,
            origin: h.origin,
            nstart: h.nstart,
        }
    }
}

/// [`write_mrc_with`] with cubic voxels of `voxel_size` Å, origin 0 and start indices 0.
pub fn write_mrc(path: &Path, vol: ArrayView3<f32>, mode: i32, voxel_size: f32) -> Result<()> {
    write_mrc_with(path, vol, mode, &MrcGeometry::isotropic(voxel_size))
}

/// Write `vol` `[nz, ny, nx]` as a little-endian MRC2014 volume (ispg 1, mx=nx, my=ny, mz=nz,
/// cella = voxel_size * n per axis, nxstart/nystart/nzstart and origin from `geom`, header
/// statistics dmin/dmax/dmean/rms of the stored values), through [`MrcWriter`].
///
/// `mode` 2 stores f32 exactly; modes 1 (int16) and 6 (uint16) store `round(v)` saturated to
/// the type's range (NaN becomes 0). The file passes `mrcfile.validate`.
pub fn write_mrc_with(
    path: &Path,
    vol: ArrayView3<f32>,
    mode: i32,
    geom: &MrcGeometry,
) -> Result<()> {
    let mut w = MrcWriter::create(path, vol.dim(), mode, geom)?;
    for section in vol.outer_iter() {
        w.write_section(section)?;
    }
    w.finish()
}

/// Writes an MRC2014 file one `[ny, nx]` section at a time (memory: one section), see
/// [`write_mrc_with`] for the header. The header statistics are accumulated while writing
/// (sums in f64: `rms = sqrt(E[v^2] - E[v]^2)`) and written by [`MrcWriter::finish`], which
/// must be called after exactly `nz` sections.
pub struct MrcWriter {
    path: std::path::PathBuf,
    f: std::io::BufWriter<std::fs::File>,
    dims: (usize, usize, usize),
    mode: i32,
    geom: MrcGeometry,
    sections: usize,
    min: f32,
    max: f32,
    sum: f64,
    sum2: f64,
}

impl MrcWriter {
    /// Create `path` for a volume of `(nz, ny, nx)` voxels of `mode` (2, 1 or 6).
    pub fn create(
        path: &Path,
        (nz, ny, nx): (usize, usize, usize),
        mode: i32,
        geom: &MrcGeometry,
    ) -> Result<MrcWriter> {
        if nx == 0 || ny == 0 || nz == 0 || nx.max(ny).max(nz) > i32::MAX as usize {
            return Err(Error::invalid(format!(
                "cannot write an MRC of shape {nz}x{ny}x{nx}"
            )));
        }
        if !matches!(mode, 1 | 2 | 6) {
            return Err(Error::invalid(format!(
                "write_mrc: mode {mode} not supported for writing (use 2, 1 or 6)"
            )));
        }
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = MrcWriter {
            path: path.to_path_buf(),
            f: std::io::BufWriter::new(file),
            dims: (nz, ny, nx),
            mode,
            geom: *geom,
            sections: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            sum: 0.0,
            sum2: 0.0,
        };
        // Placeholder statistics; finish() rewrites the header.
        let h = w.header_bytes();
        w.f.write_all(&h).map_err(|e| Error::io(path, e))?;
        Ok(w)
    }

    /// Append the next section `[ny, nx]`.
    pub fn write_section(&mut self, section: ndarray::ArrayView2<f32>) -> Result<()> {
        let (nz, ny, nx) = self.dims;
        if section.dim() != (ny, nx) || self.sections >= nz {
            return Err(Error::invalid(format!(
                "{}: section {} of shape {:?} does not fit an MRC of {nz}x{ny}x{nx}",
                self.path.display(),
                self.sections,
                section.dim()
            )));
        }
        let mut data = Vec::with_capacity(nx * ny * mode_bytes(self.mode).unwrap_or(4));
        for &v in section.iter() {
            // Quantize first, so the statistics describe what is stored.
            let q = match self.mode {
                2 => {
                    data.extend_from_slice(&v.to_le_bytes());
                    v
                }
                1 => {
                    let q = v.round() as i16;
                    data.extend_from_slice(&q.to_le_bytes());
                    q as f32
                }
                _ => {
                    let q = v.round() as u16;
                    data.extend_from_slice(&q.to_le_bytes());
                    q as f32
                }
            };
            self.min = self.min.min(q);
            self.max = self.max.max(q);
            self.sum += q as f64;
            self.sum2 += q as f64 * q as f64;
        }
        self.f
            .write_all(&data)
            .map_err(|e| Error::io(&self.path, e))?;
        self.sections += 1;
        Ok(())
    }

    /// Write the header with the statistics and close the file.
    pub fn finish(mut self) -> Result<()> {
        let path = self.path.clone();
        if self.sections != self.dims.0 {
            return Err(Error::invalid(format!(
                "{}: {} of {} MRC sections written",
                path.display(),
                self.sections,
                self.dims.0
            )));
        }
        let h = self.header_bytes();
        self.f.flush().map_err(|e| Error::io(&path, e))?;
        let f = self.f.get_mut();
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(&h).map_err(|e| Error::io(&path, e))?;
        f.flush().map_err(|e| Error::io(&path, e))
    }

    /// The 1024-byte header with the statistics accumulated so far.
    fn header_bytes(&self) -> [u8; HEADER_LEN] {
        let (nz, ny, nx) = self.dims;
        let geom = &self.geom;
        let n = (nx * ny * nz) as f64;
        let mean = self.sum / n;
        let var = (self.sum2 / n - mean * mean).max(0.0);
        let (dmin, dmax) = if self.sections == 0 {
            (0.0, 0.0)
        } else {
            (self.min, self.max)
        };
        let mut h = [0u8; HEADER_LEN];
        let mut put_i = |off: usize, v: i32| h[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put_i(0, nx as i32);
        put_i(4, ny as i32);
        put_i(8, nz as i32);
        put_i(12, self.mode);
        put_i(16, geom.nstart[0]);
        put_i(20, geom.nstart[1]);
        put_i(24, geom.nstart[2]);
        put_i(28, nx as i32);
        put_i(32, ny as i32);
        put_i(36, nz as i32);
        put_i(64, 1);
        put_i(68, 2);
        put_i(72, 3);
        put_i(88, 1); // ispg 1: a single volume
        put_i(108, 20140);
        put_i(220, 1); // nlabl
        let mut put_f = |off: usize, v: f32| h[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put_f(40, geom.voxel_size[0] * nx as f32);
        put_f(44, geom.voxel_size[1] * ny as f32);
        put_f(48, geom.voxel_size[2] * nz as f32);
        put_f(52, 90.0);
        put_f(56, 90.0);
        put_f(60, 90.0);
        put_f(76, dmin);
        put_f(80, dmax);
        put_f(84, mean as f32);
        put_f(196, geom.origin[0]);
        put_f(200, geom.origin[1]);
        put_f(204, geom.origin[2]);
        put_f(216, var.sqrt() as f32);
        h[208..212].copy_from_slice(b"MAP ");
        h[212..216].copy_from_slice(&[0x44, 0x44, 0, 0]);
        let label = b"cryodet";
        h[224..224 + label.len()].copy_from_slice(label);
        h
    }
}
