//! Images (PNG, TIFF, JPEG; 8/16-bit gray or colour) to f32 gray arrays, and back.
