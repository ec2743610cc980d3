//! Layers: each a forward/backward pair in one file, with a naive reference beside the fast path.
