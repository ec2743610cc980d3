//! Pascal VOC XML as LabelImg reads and writes it (one `.xml` per image).
//!
//! Coordinates. VOC/LabelImg store integer pixel indices, 1-based and inclusive:
//! a box covering pixel columns `xmin..=xmax` (1-based). cryodet uses continuous corner
//! coordinates `(x1, y1, x2, y2)` in pixels with the image spanning `[0, W] x [0, H]`
//! (torchvision's convention), so
//!
//! ```text
//! read:  x1 = xmin - 1,   y1 = ymin - 1,   x2 = xmax,          y2 = ymax
//! write: xmin = round(x1) + 1, ymin = round(y1) + 1, xmax = round(x2), ymax = round(y2)
//! ```
//!
//! and a box read and written again is unchanged. Coordinates written as decimals
//! ("12.0", as some tools do) are accepted on reading.
//!
//! Parsing uses `roxmltree` (strict; no DTDs, no external entities). Text written is escaped
//! with `quick_xml::escape::escape`. The layout written is LabelImg's `pascal_voc_io.py`
//! output (tab indentation, no XML declaration).

use crate::error::{Error, Result};
use crate::io::detections::Detection;
use std::fmt::Write as _;
use std::path::Path;

/// One annotated object.
#[derive(Clone, Debug, PartialEq)]
pub struct VocObject {
    /// Class name, e.g. "mitochondria".
    pub name: String,
    /// Continuous box `(x1, y1, x2, y2)` = `(xmin - 1, ymin - 1, xmax, ymax)` (see module doc).
    pub bbox: [f32; 4],
    pub difficult: bool,
    pub truncated: bool,
}

/// One image's annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct VocAnnotation {
    /// Image file name as stored (usually without directory).
    pub filename: String,
    /// Image path as stored by LabelImg (absolute path on the annotator's machine), if any.
    pub path: Option<String>,
    pub width: u32,
    pub height: u32,
    /// Channels (LabelImg writes 1 for gray, 3 for colour).
    pub depth: u32,
    /// Objects in file order; may be empty (an image without objects).
    pub objects: Vec<VocObject>,
}

/// The single child element of `node` called `name`, if any.
fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.has_tag_name(name))
}

/// Trimmed text of child `name` of `node`, or `None` when the child is absent.
fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name).map(|c| c.text().unwrap_or("").trim())
}

/// Read one LabelImg/VOC XML file. Errors (typed, naming the file): unreadable file, invalid
/// UTF-8, malformed XML, root not `<annotation>`, missing `filename`/`size`/`width`/`height`,
/// missing object `name`/`bndbox`/coordinate, non-numeric or non-finite coordinate,
/// `xmax < xmin` or `ymax < ymin`.
pub fn read_voc(path: &Path) -> Result<VocAnnotation> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_voc_bytes(path, &bytes)
}

/// [`parse_voc`] on raw file bytes (checked to be UTF-8 first); `path` is only used in error
/// messages.
pub fn parse_voc_bytes(path: &Path, bytes: &[u8]) -> Result<VocAnnotation> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::format(path, format!("not valid UTF-8 (byte {})", e.valid_up_to())))?;
    parse_voc(path, text)
}

/// Parse VOC XML text; `path` is only used in error messages.
pub fn parse_voc(path: &Path, text: &str) -> Result<VocAnnotation> {
    let fail = |reason: String| Error::format(path, reason);
    let doc = roxmltree::Document::parse(text).map_err(|e| fail(format!("malformed XML: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name("annotation") {
        return Err(fail(format!(
            "root element is <{}>, expected <annotation>",
            root.tag_name().name()
        )));
    }
    let filename = child_text(root, "filename")
        .ok_or_else(|| fail("missing <filename>".into()))?
        .to_string();
    let img_path = child_text(root, "path").map(str::to_string);
    let size = child(root, "size").ok_or_else(|| fail("missing <size>".into()))?;
    let dim = |name: &str, required: bool| -> Result<u32> {
        match child_text(size, name) {
            None if !required => Ok(0),
            None => Err(fail(format!("missing <size>/<{name}>"))),
            Some(t) => parse_number(t)
                .filter(|v| *v >= 0.0 && *v <= u32::MAX as f64 && v.fract() == 0.0)
                .map(|v| v as u32)
                .ok_or_else(|| {
                    fail(format!(
                        "<size>/<{name}> is not a non-negative integer: {t:?}"
                    ))
                }),
        }
    };
    let (width, height, depth) = (
        dim("width", true)?,
        dim("height", true)?,
        dim("depth", false)?,
    );

    let mut objects = Vec::new();
    for (i, obj) in root
        .children()
        .filter(|c| c.has_tag_name("object"))
        .enumerate()
    {
        let at = |what: &str| format!("object {} : {what}", i + 1);
        let name = child_text(obj, "name")
            .ok_or_else(|| fail(at("missing <name>")))?
            .to_string();
        let flag = |tag: &str| -> Result<bool> {
            match child_text(obj, tag) {
                None | Some("") | Some("0") => Ok(false),
                Some("1") => Ok(true),
                Some(t) => Err(fail(at(&format!("<{tag}> must be 0 or 1, got {t:?}")))),
            }
        };
        let (difficult, truncated) = (flag("difficult")?, flag("truncated")?);
        let bnd = child(obj, "bndbox").ok_or_else(|| fail(at("missing <bndbox>")))?;
        let coord = |tag: &str| -> Result<f32> {
            let t = child_text(bnd, tag).ok_or_else(|| fail(at(&format!("missing <{tag}>"))))?;
            parse_number(t)
                .map(|v| v as f32)
                .ok_or_else(|| fail(at(&format!("<{tag}> is not a finite number: {t:?}"))))
        };
        let (xmin, ymin, xmax, ymax) = (
            coord("xmin")?,
            coord("ymin")?,
            coord("xmax")?,
            coord("ymax")?,
        );
        if xmax < xmin || ymax < ymin {
            return Err(fail(at(&format!(
                "inverted box xmin={xmin} ymin={ymin} xmax={xmax} ymax={ymax}"
            ))));
        }
        objects.push(VocObject {
            name,
            bbox: [xmin - 1.0, ymin - 1.0, xmax, ymax],
            difficult,
            truncated,
        });
    }
    Ok(VocAnnotation {
        filename,
        path: img_path,
        width,
        height,
        depth,
        objects,
    })
}

/// A finite decimal number.
fn parse_number(t: &str) -> Option<f64> {
    t.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Escape text content for XML.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

impl VocAnnotation {
    /// The annotation of a gray image (depth 1) `(h, w)` named `filename` (no path) holding
    /// `objects`.
    pub fn gray(
        filename: String,
        (h, w): (usize, usize),
        objects: Vec<VocObject>,
    ) -> VocAnnotation {
        VocAnnotation {
            filename,
            path: None,
            width: w as u32,
            height: h as u32,
            depth: 1,
            objects,
        }
    }

    /// The annotation of detections on an image `(h, w)` (gray, depth 1) named `filename`, at
    /// `path`, as `cryodet detect --format voc` writes it: one object per detection, class =
    /// its label, not difficult, not truncated.
    pub fn of_detections(
        filename: String,
        path: Option<String>,
        (h, w): (usize, usize),
        dets: &[Detection],
    ) -> VocAnnotation {
        VocAnnotation {
            filename,
            path,
            width: w as u32,
            height: h as u32,
            depth: 1,
            objects: dets
                .iter()
                .map(|d| VocObject {
                    name: d.label.clone(),
                    bbox: d.bbox,
                    difficult: false,
                    truncated: false,
                })
                .collect(),
        }
    }

    /// The XML text [`write_voc`] writes (LabelImg's layout). `folder` is the name of the
    /// directory holding the image.
    pub fn to_xml(&self, folder: &str) -> String {
        let mut s = String::new();
        // `write!` into a String cannot fail.
        let _ = writeln!(s, "<annotation>");
        let _ = writeln!(s, "\t<folder>{}</folder>", esc(folder));
        let _ = writeln!(s, "\t<filename>{}</filename>", esc(&self.filename));
        if let Some(p) = &self.path {
            let _ = writeln!(s, "\t<path>{}</path>", esc(p));
        }
        let _ = writeln!(
            s,
            "\t<source>\n\t\t<database>Unknown</database>\n\t</source>"
        );
        let _ = writeln!(
            s,
            "\t<size>\n\t\t<width>{}</width>\n\t\t<height>{}</height>\n\t\t<depth>{}</depth>\n\t</size>",
            self.width, self.height, self.depth
        );
        let _ = writeln!(s, "\t<segmented>0</segmented>");
        for o in &self.objects {
            let [x1, y1, x2, y2] = o.bbox;
            // LabelImg's 1-based inclusive corners; a box thinner than a pixel (x2 rounding below
            // x1 + 1) keeps the one pixel it lies in, so that every written file reads back.
            let (xmin, ymin) = (x1.round() as i64 + 1, y1.round() as i64 + 1);
            let (xmax, ymax) = ((x2.round() as i64).max(xmin), (y2.round() as i64).max(ymin));
            let _ = writeln!(s, "\t<object>");
            let _ = writeln!(s, "\t\t<name>{}</name>", esc(&o.name));
            let _ = writeln!(s, "\t\t<pose>Unspecified</pose>");
            let _ = writeln!(s, "\t\t<truncated>{}</truncated>", o.truncated as u8);
            let _ = writeln!(s, "\t\t<difficult>{}</difficult>", o.difficult as u8);
            let _ = writeln!(
                s,
                "\t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t<ymin>{}</ymin>\n\t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>",
                xmin, ymin, xmax, ymax
            );
            let _ = writeln!(s, "\t</object>");
        }
        let _ = writeln!(s, "</annotation>");
        s
    }

    /// Clip every box to the image `[0, W] x [0, H]`; drop boxes left empty (zero width or
    /// height). Returns one warning per clipped or dropped box. With an unknown size
    /// (width or height 0, as LabelImg writes when it could not read the image) nothing is
    /// clipped and one warning says so.
    pub fn clip_to_image(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.width == 0 || self.height == 0 {
            if !self.objects.is_empty() {
                warnings.push(format!(
                    "{}: image size unknown ({}x{}), boxes not clipped",
                    self.filename, self.width, self.height
                ));
            }
            return warnings;
        }
        let (w, h) = (self.width as f32, self.height as f32);
        let name = &self.filename;
        self.objects.retain_mut(|o| {
            let b = o.bbox;
            let c = [
                b[0].clamp(0.0, w),
                b[1].clamp(0.0, h),
                b[2].clamp(0.0, w),
                b[3].clamp(0.0, h),
            ];
            if c[2] <= c[0] || c[3] <= c[1] {
                warnings.push(format!(
                    "{name}: dropped box {b:?} ({}): empty inside the {w}x{h} image",
                    o.name
                ));
                return false;
            }
            if c != b {
                warnings.push(format!("{name}: clipped box {b:?} ({}) to {c:?}", o.name));
                o.bbox = c;
            }
            true
        });
        warnings
    }
}

/// Write `ann` as LabelImg XML. The `<folder>` is the name of the image's directory when
/// `ann.path` is set, else the name of the XML file's directory.
pub fn write_voc(path: &Path, ann: &VocAnnotation) -> Result<()> {
    let dir_name = |p: &Path| {
        p.parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let folder = match &ann.path {
        Some(p) => dir_name(Path::new(p)),
        None => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::canonicalize(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default()
        }
    };
    std::fs::write(path, ann.to_xml(&folder)).map_err(|e| Error::io(path, e))
}
