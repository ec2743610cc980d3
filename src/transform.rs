//! The input transform: intensities to [0,1], bilinear resize (torch semantics), ImageNet normalization, boxes back to original pixels.
