//! The whole Faster R-CNN: backbone, RPN head, RoI head, predictor; detect and trace.
