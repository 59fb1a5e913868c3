"""Networks: timm backbones, segmentation-models-pytorch UNets, and the models built on them."""
