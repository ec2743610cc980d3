//! Drawing on RGB images: lines, rectangles, a small bitmap font; used by overlays and plots.
