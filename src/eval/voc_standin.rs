//! TEMPORARY stand-in for `crate::io::voc` (being written on another branch).
//! DELETE this file once `crate::io::voc::{VocAnnotation, VocObject, read_voc}` lands on main,
//! and replace `super::voc_standin` by `crate::io::voc` in `dataset.rs`.
//! Same structs and signature as the real module; minimal parsing, no validation beyond need.

use crate::error::{Error, Result};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct VocObject {
    pub name: String,
    /// `(xmin - 1, ymin - 1, xmax, ymax)`: continuous coordinates.
    pub bbox: [f32; 4],
    pub difficult: bool,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VocAnnotation {
    pub filename: String,
    pub path: Option<String>,
    pub width: u32,
    pub height: u32,
    pub depth: u32,
    pub objects: Vec<VocObject>,
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, tag: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(tag))
        .and_then(|c| c.text())
        .map(str::trim)
}

pub fn read_voc(path: impl AsRef<Path>) -> Result<VocAnnotation> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let doc = roxmltree::Document::parse(&text)
        .map_err(|e| Error::format(path, format!("invalid XML: {e}")))?;
    let root = doc.root_element();
    let num = |node, tag: &str| -> Result<f32> {
        child_text(node, tag)
            .ok_or_else(|| Error::format(path, format!("missing <{tag}>")))?
            .parse::<f32>()
            .map_err(|_| Error::format(path, format!("<{tag}> is not a number")))
    };
    let size = root.children().find(|c| c.has_tag_name("size"));
    let (width, height, depth) = match size {
        Some(s) => (
            num(s, "width")? as u32,
            num(s, "height")? as u32,
            num(s, "depth").unwrap_or(1.0) as u32,
        ),
        None => (0, 0, 0),
    };
    let mut objects = Vec::new();
    for o in root.children().filter(|c| c.has_tag_name("object")) {
        let bb = o
            .children()
            .find(|c| c.has_tag_name("bndbox"))
            .ok_or_else(|| Error::format(path, "object without <bndbox>"))?;
        let flag = |tag| child_text(o, tag).map_or(false, |t| t == "1");
        objects.push(VocObject {
            name: child_text(o, "name").unwrap_or("").to_string(),
            bbox: [
                num(bb, "xmin")? - 1.0,
                num(bb, "ymin")? - 1.0,
                num(bb, "xmax")?,
                num(bb, "ymax")?,
            ],
            difficult: flag("difficult"),
            truncated: flag("truncated"),
        });
    }
    Ok(VocAnnotation {
        filename: child_text(root, "filename").unwrap_or("").to_string(),
        path: child_text(root, "path").map(str::to_string),
        width,
        height,
        depth,
        objects,
    })
}
