//! Evaluation: VOC matching, AP (all-point, 11-point, COCO 101-point), F1, mIoU, reports.
