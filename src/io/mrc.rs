//! MRC / MRC2014 stacks and volumes (`.mrc`, `.mrcs`, `.st`, `.ali`, `.rec`, `.map`): header,
//! extended header, modes 0, 1, 2, 6, 12; reading and writing.
//!
//! File layout (MRC2014, <https://www.ccpem.ac.uk/mrc_format/mrc2014.php>):
//! `[1024-byte header][nsymbt bytes extended header][nx*ny*nz voxels]`, voxels stored with x
//! fastest, then y, then z. Header words used here (byte offsets, 4-byte words):
//!
//! | offset | field            | offset  | field                       |
//! |--------|------------------|---------|-----------------------------|
//! | 0..12  | nx, ny, nz (i32) | 92      | nsymbt (ext. header bytes)  |
//! | 12     | mode (i32)       | 104     | exttyp (4 chars)            |
//! | 28..40 | mx, my, mz (i32) | 108     | nversion (20140)            |
//! | 40..52 | cella (f32, Å)   | 208     | 'MAP '                      |
//! | 64..76 | mapc, mapr, maps | 212     | machine stamp               |
//! | 76..88 | dmin, dmax, dmean| 216     | rms                         |
//! | 88     | ispg             | 220/224 | nlabl / 10 x 80-char labels |
//!
//! Modes: 0 = int8 (signed, as MRC2014 and `mrcfile`), 1 = int16, 2 = float32, 6 = uint16,
//! 12 = float16. Every mode is returned as f32 (exact for all of them).
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
//! Safety against corrupt headers: the file size must equal
//! `1024 + nsymbt + nx*ny*nz*bytes_per_voxel` (computed with overflow checks) before anything
//! of that size is allocated.

use crate::error::{Error, Result};
use ndarray::{Array2, Array3, ArrayView3, Axis};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Size of the main MRC header in bytes.
pub const HEADER_LEN: usize = 1024;
/// Largest dimension we accept on any axis (a sanity bound on header values).
pub const MAX_DIM: usize = 1 << 20;

/// File extensions that are MRC files (lower case).
pub const MRC_EXTENSIONS: [&str; 6] = ["mrc", "mrcs", "st", "ali", "rec", "map"];

/// True when the path ends with an MRC extension (case-insensitive).
pub fn is_mrc_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| MRC_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// The parts of an MRC header that cryodet uses.
#[derive(Clone, Debug, PartialEq)]
pub struct MrcHeader {
    /// Columns (fastest axis), rows, sections.
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
    /// Data mode: 0 int8, 1 int16, 2 float32, 6 uint16, 12 float16.
    pub mode: i32,
    /// Voxel size in Ångström per axis (x, y, z): `cella / (mx, my, mz)`, 0 when m is 0.
    pub voxel_size: [f32; 3],
    /// Sampling grid size (mx, my, mz).
    pub grid: [i32; 3],
    /// Bytes of extended header after the 1024-byte main header (`nsymbt`).
    pub ext_header_len: usize,
    /// Extended header type, e.g. "FEI1", "SERI", "" when unset.
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
    /// Text labels (trimmed), at most 10.
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
    let exttyp = String::from_utf8_lossy(&b[104..108])
        .trim_matches(['\0', ' '])
        .to_string();
    let nlabl = w.i32(220).clamp(0, 10) as usize;
    let labels = (0..nlabl)
        .map(|i| {
            String::from_utf8_lossy(&b[224 + 80 * i..224 + 80 * (i + 1)])
                .trim_end_matches(['\0', ' '])
                .to_string()
        })
        .collect();
    Ok(MrcHeader {
        nx,
        ny,
        nz,
        mode,
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

/// Read and validate the header of an MRC file, including that the file size equals
/// `1024 + nsymbt + nx*ny*nz*bytes_per_voxel`.
pub fn read_header(path: &Path) -> Result<MrcHeader> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    check_min_len(path, file_len)?;
    let mut b = [0u8; HEADER_LEN];
    f.read_exact(&mut b).map_err(|e| Error::io(path, e))?;
    let h = parse_header(path, &b)?;
    check_size(path, &h, file_len)?;
    Ok(h)
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

/// The file size must equal `1024 + nsymbt + nx*ny*nz*bytes_per_voxel` (computed with overflow
/// checks): this runs before anything of the header's claimed size is allocated.
pub fn check_size(path: &Path, h: &MrcHeader, file_len: u64) -> Result<()> {
    let expected = (h.nx as u64)
        .checked_mul(h.ny as u64)
        .and_then(|v| v.checked_mul(h.nz as u64))
        .and_then(|v| v.checked_mul(h.bytes_per_voxel() as u64))
        .and_then(|v| v.checked_add((HEADER_LEN + h.ext_header_len) as u64));
    match expected {
        Some(e) if e == file_len => Ok(()),
        Some(e) => Err(Error::format(
            path,
            format!(
                "MRC size mismatch: header says {}x{}x{} voxels of mode {} + {} bytes of extended \
                 header = {e} bytes, the file has {file_len} bytes ({})",
                h.nx,
                h.ny,
                h.nz,
                h.mode,
                h.ext_header_len,
                if e > file_len {
                    "truncated?"
                } else {
                    "trailing data"
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
    let h = parse_header(path, b)?;
    check_size(path, &h, bytes.len() as u64)?;
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
        0 => out
            .iter_mut()
            .zip(raw)
            .for_each(|(o, &b)| *o = b as i8 as f32),
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

/// Read section `z` as `[ny, nx]` (= `mrcfile.open(path).data[z]`). `header` must come from
/// [`read_header`] on the same file. Only that section's bytes are read.
pub fn read_slice(path: &Path, header: &MrcHeader, z: usize) -> Result<Array2<f32>> {
    if z >= header.nz {
        return Err(Error::invalid(format!(
            "{}: slice {z} out of range (the stack has {} sections)",
            path.display(),
            header.nz
        )));
    }
    let n = header.slice_bytes();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start((header.data_offset() + z * n) as u64))
        .map_err(|e| Error::io(path, e))?;
    let mut raw = vec![0u8; n];
    f.read_exact(&mut raw).map_err(|e| Error::io(path, e))?;
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
    let h = read_header(path)?;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(h.data_offset() as u64))
        .map_err(|e| Error::io(path, e))?;
    let mut out = Array3::<f32>::zeros((h.nz, h.ny, h.nx));
    let n = h.slice_bytes();
    let mut raw = vec![0u8; n];
    for mut section in out.axis_iter_mut(Axis(0)) {
        f.read_exact(&mut raw).map_err(|e| Error::io(path, e))?;
        decode_into(
            &h,
            &raw,
            section.as_slice_mut().expect("fresh array is contiguous"),
        );
    }
    Ok(out)
}

/// Write `vol` `[nz, ny, nx]` as a little-endian MRC2014 volume (ispg 1, mx=nx, my=ny, mz=nz,
/// cella = voxel_size * n, header statistics dmin/dmax/dmean/rms of the stored values).
///
/// `mode` 2 stores f32 exactly; modes 1 (int16) and 6 (uint16) store `round(v)` saturated to
/// the type's range (NaN becomes 0). The file passes `mrcfile.validate`.
pub fn write_mrc(path: &Path, vol: ArrayView3<f32>, mode: i32, voxel_size: f32) -> Result<()> {
    let (nz, ny, nx) = vol.dim();
    if nx == 0 || ny == 0 || nz == 0 || nx.max(ny).max(nz) > i32::MAX as usize {
        return Err(Error::invalid(format!(
            "cannot write an MRC of shape {nz}x{ny}x{nx}"
        )));
    }
    // Quantize to the stored values first, so the header statistics describe what is stored.
    let stored: Vec<f32> = match mode {
        2 => vol.iter().copied().collect(),
        1 => vol.iter().map(|&v| (v.round() as i16) as f32).collect(),
        6 => vol.iter().map(|&v| (v.round() as u16) as f32).collect(),
        _ => {
            return Err(Error::invalid(format!(
                "write_mrc: mode {mode} not supported for writing (use 2, 1 or 6)"
            )))
        }
    };
    let n = stored.len() as f64;
    let mean = stored.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = stored
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let (dmin, dmax) = stored
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });

    let mut h = [0u8; HEADER_LEN];
    let mut put_i = |off: usize, v: i32| h[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put_i(0, nx as i32);
    put_i(4, ny as i32);
    put_i(8, nz as i32);
    put_i(12, mode);
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
    put_f(40, voxel_size * nx as f32);
    put_f(44, voxel_size * ny as f32);
    put_f(48, voxel_size * nz as f32);
    put_f(52, 90.0);
    put_f(56, 90.0);
    put_f(60, 90.0);
    put_f(76, dmin);
    put_f(80, dmax);
    put_f(84, mean as f32);
    put_f(216, var.sqrt() as f32);
    h[208..212].copy_from_slice(b"MAP ");
    h[212..216].copy_from_slice(&[0x44, 0x44, 0, 0]);
    let label = b"cryodet";
    h[224..224 + label.len()].copy_from_slice(label);

    let bytes = mode_bytes(mode).expect("mode checked above");
    let mut data = Vec::with_capacity(stored.len() * bytes);
    match mode {
        2 => stored
            .iter()
            .for_each(|v| data.extend_from_slice(&v.to_le_bytes())),
        1 => stored
            .iter()
            .for_each(|&v| data.extend_from_slice(&(v as i16).to_le_bytes())),
        _ => stored
            .iter()
            .for_each(|&v| data.extend_from_slice(&(v as u16).to_le_bytes())),
    }
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    f.write_all(&h).map_err(|e| Error::io(path, e))?;
    f.write_all(&data).map_err(|e| Error::io(path, e))?;
    f.flush().map_err(|e| Error::io(path, e))
}
