//! ResNet-50 v1.5 (torchvision.models.resnet50): bottlenecks, stages, the C4 split.
