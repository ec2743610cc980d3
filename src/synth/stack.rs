//! A synthetic tomogram: consecutive slices of one volume (filled in below).
