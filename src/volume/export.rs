//! Writing 3D objects: JSON, CSV, an IMOD point file, and a label volume.

use std::io::Write;
use std::path::Path;

use ndarray::{Array2, Array3};
use serde::Serialize;

use super::link::Object3d;
use crate::error::{Error, Result};

/// Name of class `class_id`: `class_names[class_id]` (the list `detect` uses, indexed by class id),
/// or `class_<id>` when the list is too short.
fn class_name<S: AsRef<str>>(class_names: &[S], class_id: usize) -> String {
    class_names
        .get(class_id)
        .map(|s| s.as_ref().to_string())
        .unwrap_or_else(|| format!("class_{class_id}"))
}

#[derive(Serialize)]
struct JsonFile<'a> {
    /// States the box layout in the file itself.
    bbox3d_layout: &'static str,
    objects: Vec<JsonObject<'a>>,
}

#[derive(Serialize)]
struct JsonObject<'a> {
    id: usize,
    class_id: usize,
    class: String,
    bbox3d: &'a [f32; 6],
    score: f32,
    n_slices: usize,
    touches_first: bool,
    touches_last: bool,
    slices: Vec<JsonSlice<'a>>,
}

#[derive(Serialize)]
struct JsonSlice<'a> {
    z: usize,
    bbox: &'a [f32; 4],
    score: f32,
}

/// Writes the objects as JSON:
/// `{"bbox3d_layout": "...", "objects": [{"id", "class_id", "class", "bbox3d": [x1,y1,z1,x2,y2,z2],
/// "score", "n_slices", "touches_first", "touches_last", "slices": [{"z", "bbox": [x1,y1,x2,y2],
/// "score"}]}]}`; `z2` is exclusive (last slice + 1).
pub fn write_objects_json<S: AsRef<str>>(
    path: &Path,
    objects: &[Object3d],
    class_names: &[S],
) -> Result<()> {
    let text = objects_json(objects, class_names)
        .map_err(|e| Error::format(path, format!("cannot encode JSON: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// The text of `NAME.objects.json` ([`write_objects_json`]) without its final newline.
pub fn objects_json<S: AsRef<str>>(
    objects: &[Object3d],
    class_names: &[S],
) -> std::result::Result<String, serde_json::Error> {
    let file = JsonFile {
        bbox3d_layout: "x1,y1,z1,x2,y2,z2 in pixels/slices; z2 exclusive (last slice + 1)",
        objects: objects
            .iter()
            .map(|o| JsonObject {
                id: o.id,
                class_id: o.class_id,
                class: class_name(class_names, o.class_id),
                bbox3d: &o.bbox3d,
                score: o.score,
                n_slices: o.n_slices(),
                touches_first: o.touches_first,
                touches_last: o.touches_last,
                slices: o
                    .slices
                    .iter()
                    .map(|(z, b)| JsonSlice {
                        z: *z,
                        bbox: &b.bbox,
                        score: b.score,
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&file)
}

/// Writes one CSV row per object, with the header
/// `id,class,x1,y1,z1,x2,y2,z2,score,n_slices` (`z2` exclusive).
pub fn write_objects_csv<S: AsRef<str>>(
    path: &Path,
    objects: &[Object3d],
    class_names: &[S],
) -> Result<()> {
    let csv_err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        other => Error::format(path, format!("cannot write CSV: {other:?}")),
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    w.write_record([
        "id", "class", "x1", "y1", "z1", "x2", "y2", "z2", "score", "n_slices",
    ])
    .map_err(csv_err)?;
    for o in objects {
        let b = &o.bbox3d;
        let mut row = vec![o.id.to_string(), class_name(class_names, o.class_id)];
        row.extend(b.iter().map(|v| v.to_string()));
        row.push(o.score.to_string());
        row.push(o.n_slices().to_string());
        w.write_record(&row).map_err(csv_err)?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// Writes an IMOD point file, one point per line: `object contour x y z`.
///
/// * object = [`Object3d::id`] (1-based; objects numbered in between but absent from `objects`
///   become empty IMOD objects, so the numbers keep matching the JSON/CSV/label volume);
/// * contour = 1, 2, ... over the object's linked slices (bridged/strided slices get none);
/// * each contour is the box's 4 corners `(x1,y1) (x2,y1) (x2,y2) (x1,y2)`;
/// * x, y are IMOD pixel (index) coordinates — the same as the detector's box coordinates,
///   where pixel `i` spans `[i, i + 1)`, so the centre of the first pixel is 0.5 — with y the
///   row index in the order the MRC file stores rows (3dmod draws row 0 at the bottom);
///   z is the 0-based slice index, as in IMOD models.
///
/// Convert with `point2model -input objects.txt -output objects.mod` (IMOD's default object
/// type is closed contours, which is what boxes are; add `-image tomo.mrc` to copy the
/// tomogram's pixel size and origin into the model).
pub fn write_imod_points(path: &Path, objects: &[Object3d]) -> Result<()> {
    let mut out = String::new();
    for o in objects {
        if o.id == 0 {
            return Err(Error::invalid(
                "IMOD object numbers start at 1: an object has id 0 (use link_slices' output)",
            ));
        }
        for (c, (z, b)) in o.slices.iter().enumerate() {
            let [x1, y1, x2, y2] = b.bbox;
            for (x, y) in [(x1, y1), (x2, y1), (x2, y2), (x1, y2)] {
                out.push_str(&format!("{} {} {x:.2} {y:.2} {z}\n", o.id, c + 1));
            }
        }
    }
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(out.as_bytes()).map_err(|e| Error::io(path, e))
}

/// The note printed instead of writing the IMOD point file `path` when there is no object:
/// IMOD's `point2model` cannot read an empty point file ("Reading beginning of file").
pub fn no_points_note(path: &Path) -> String {
    format!(
        "  note: no 3D object, so no IMOD point file {} (point2model cannot read an empty one)",
        path.display()
    )
}

/// Half-open range of pixel indices whose centres `i + 0.5` lie in `[lo, hi)`, clipped to `[0, n)`.
fn pixel_span(lo: f32, hi: f32, n: usize) -> std::ops::Range<usize> {
    let clip = |v: f32| (v - 0.5).ceil().clamp(0.0, n as f32) as usize;
    if !(lo.is_finite() && hi.is_finite()) {
        return 0..0;
    }
    clip(lo)..clip(hi).max(clip(lo))
}

/// A label volume `[nz, ny, nx]`: 0 = background, voxel = object id inside the object's box on
/// each slice `z` in `[z1, z2)` (linked boxes, and [`Object3d::box_at`]'s interpolation on bridged
/// and strided slices). A voxel is inside a box when its centre `(i + 0.5, j + 0.5)` is.
/// Where objects overlap, the one with the higher score wins (painted last; ties: higher id).
/// Ids above 65535 are written as 65535.
pub fn label_volume(objects: &[Object3d], nz: usize, ny: usize, nx: usize) -> Array3<u16> {
    let order = paint_order(objects);
    let mut vol = Array3::<u16>::zeros((nz, ny, nx));
    for z in 0..nz {
        vol.index_axis_mut(ndarray::Axis(0), z)
            .assign(&label_slice(&order, z, ny, nx));
    }
    vol
}

/// Objects by increasing (score, id): the order in which they are painted.
fn paint_order(objects: &[Object3d]) -> Vec<&Object3d> {
    let mut order: Vec<&Object3d> = objects.iter().collect();
    order.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.id.cmp(&b.id)));
    order
}

/// Slice `z` of [`label_volume`], `[ny, nx]`; `order` from [`paint_order`].
fn label_slice(order: &[&Object3d], z: usize, ny: usize, nx: usize) -> Array2<u16> {
    let mut out = Array2::<u16>::zeros((ny, nx));
    for o in order {
        let label = o.id.min(u16::MAX as usize) as u16;
        let (Some(first), Some(last)) = (o.slices.first(), o.slices.last()) else {
            continue;
        };
        if z < first.0 || z > last.0 {
            continue;
        }
        let Some(b) = o.box_at(z) else { continue };
        for y in pixel_span(b[1], b[3], ny) {
            for x in pixel_span(b[0], b[2], nx) {
                out[[y, x]] = label;
            }
        }
    }
    out
}

/// Writes [`label_volume`] as an MRC file (mode 6, unsigned 16-bit) that IMOD and mrcfile open
/// beside the tomogram: voxel value = object id, 0 = background. `geometry` is the tomogram's
/// (voxel size per axis, origin, start indices: `MrcGeometry::of_header`), so that ChimeraX,
/// napari and 3dmod overlay the labels on it. Written slice by slice (memory: one slice).
pub fn write_label_volume(
    path: &Path,
    objects: &[Object3d],
    (nz, ny, nx): (usize, usize, usize),
    geometry: &crate::io::mrc::MrcGeometry,
) -> Result<()> {
    let order = paint_order(objects);
    let mut w = crate::io::mrc::MrcWriter::create(path, (nz, ny, nx), 6, geometry)?;
    for z in 0..nz {
        let slice = label_slice(&order, z, ny, nx).mapv(|v| v as f32);
        w.write_section(slice.view())?;
    }
    w.finish()
}
