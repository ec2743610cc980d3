//! Weight files: safetensors, under torchvision's parameter names behind a prefix
//! (`backbone.`, `rpn.`, `head.`), so torchvision checkpoints convert by renaming.
//!
//! Tensors are stored as f32 (f16 and bf16 are accepted and upcast; f64 and integer tensors are
//! converted too, which the test fixtures use). Metadata (`__metadata__` in the header) carries
//! `classes` = comma-separated class names, background first, and optionally `bn_eps`.
//!
//! A loader takes tensors by name ([`WeightFile::take`]), checking the shape it expects; when the
//! network is built, [`WeightFile::finish`] reports any tensor that was not used. Every error
//! names the file, the tensor and both shapes.

use crate::error::{Error, Result};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The tensors of one safetensors file, converted to f32, and its metadata.
#[derive(Debug, Clone)]
pub struct WeightFile {
    pub path: PathBuf,
    tensors: BTreeMap<String, ArrayD<f32>>,
    pub metadata: HashMap<String, String>,
}

/// Converts a little-endian byte buffer of `dtype` to f32 values.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    macro_rules! conv {
        ($t:ty, $n:expr, $f:expr) => {
            bytes
                .chunks_exact($n)
                .map(|c| $f(<$t>::from_le_bytes(c.try_into().unwrap())))
                .collect()
        };
    }
    Some(match dtype {
        Dtype::F32 => conv!(f32, 4, |v: f32| v),
        Dtype::F64 => conv!(f64, 8, |v: f64| v as f32),
        Dtype::F16 => conv!(u16, 2, |v: u16| half::f16::from_bits(v).to_f32()),
        Dtype::BF16 => conv!(u16, 2, |v: u16| half::bf16::from_bits(v).to_f32()),
        Dtype::I64 => conv!(i64, 8, |v: i64| v as f32),
        Dtype::I32 => conv!(i32, 4, |v: i32| v as f32),
        Dtype::I16 => conv!(i16, 2, |v: i16| v as f32),
        Dtype::U8 => bytes.iter().map(|&b| b as f32).collect(),
        Dtype::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        Dtype::BOOL => bytes.iter().map(|&b| (b != 0) as u8 as f32).collect(),
        _ => return None,
    })
}

impl WeightFile {
    /// Reads and validates a safetensors file (header bounds are checked by the `safetensors`
    /// crate before any tensor is touched; the file is never larger in memory than on disk).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses a safetensors buffer; `path` is only used in error messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |r: String| Error::weights(path, r);
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("bad safetensors header: {e}")))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let data = to_f32(view.dtype(), view.data()).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` has unsupported dtype {:?}",
                    view.dtype()
                ))
            })?;
            let arr = ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|_| {
                bad(format!(
                    "tensor `{name}`: data does not fit shape {shape:?}"
                ))
            })?;
            if arr.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!("tensor `{name}` contains NaN or Inf")));
            }
            tensors.insert(name, arr);
        }
        Ok(WeightFile {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// A weight file built in memory (training, tests).
    pub fn from_tensors(
        path: impl AsRef<Path>,
        tensors: Vec<(String, ArrayD<f32>)>,
        metadata: HashMap<String, String>,
    ) -> Self {
        WeightFile {
            path: path.as_ref().to_path_buf(),
            tensors: tensors.into_iter().collect(),
            metadata,
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn get(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.tensors.get(name)
    }

    /// Removes and returns tensor `name`, which must have `ndim` dimensions.
    pub fn take(&mut self, name: &str, ndim: usize) -> Result<ArrayD<f32>> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::weights(&self.path, format!("missing tensor `{name}`")))?;
        if t.ndim() != ndim {
            return Err(Error::weights(
                &self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {ndim} dimensions",
                    t.shape()
                ),
            ));
        }
        Ok(t)
    }

    /// Removes and returns tensor `name`, which must have exactly `shape`.
    pub fn take_shaped(&mut self, name: &str, shape: &[usize]) -> Result<ArrayD<f32>> {
        let t = self.take(name, shape.len())?;
        if t.shape() != shape {
            return Err(Error::weights(
                &self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    t.shape(),
                    shape
                ),
            ));
        }
        Ok(t)
    }

    /// Class names from the metadata key `classes` (comma-separated, background first).
    pub fn classes(&self) -> Option<Vec<String>> {
        self.metadata
            .get("classes")
            .map(|s| s.split(',').map(|c| c.trim().to_string()).collect())
    }

    /// Fails if any tensor was not taken: an extra tensor means the file is for another network.
    pub fn finish(self) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let extra: Vec<String> = self
            .tensors
            .iter()
            .take(5)
            .map(|(n, t)| format!("`{n}` {:?}", t.shape()))
            .collect();
        Err(Error::weights(
            &self.path,
            format!(
                "{} unexpected tensor(s) not used by the network: {}{}",
                self.tensors.len(),
                extra.join(", "),
                if self.tensors.len() > 5 { ", ..." } else { "" }
            ),
        ))
    }
}

/// Storage precision of a saved weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

/// Writes tensors to `path` atomically: to `path.tmp` first, fsync, then rename, so a run killed
/// while saving leaves the previous file intact.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &[(String, ArrayViewD<f32>)],
    metadata: &HashMap<String, String>,
    precision: Precision,
) -> Result<()> {
    let path = path.as_ref();
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let bytes: Vec<u8> = match precision {
            Precision::F32 => t.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::F16 => t
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        };
        buffers.push((name.clone(), t.shape().to_vec(), bytes));
    }
    let dtype = match precision {
        Precision::F32 => Dtype::F32,
        Precision::F16 => Dtype::F16,
    };
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(n, s, b)| {
            let v = safetensors::tensor::TensorView::new(dtype, s.clone(), b)
                .map_err(|e| Error::weights(path, format!("tensor `{n}`: {e}")));
            v.map(|v| (n.clone(), v))
        })
        .collect::<Result<_>>()?;
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    let bytes =
        safetensors::serialize(views, &meta).map_err(|e| Error::weights(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
