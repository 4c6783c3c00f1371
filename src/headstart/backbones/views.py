"""Test-time views of an image, over which its frozen features are averaged.

An image backbone's features depend on where the crop falls and which way the image faces; averaging them over a
few deterministic views (the mirror image; the four corner crops as well) gives features that depend less on
either, at one extraction per view. The views are part of the backbone's preprocessing
(:class:`~headstart.backbones.preprocess.ImagePreprocess` ``views``), so they are saved with a model, applied
the same way when it predicts, and part of the feature-cache key.

The first view is always the evaluation crop itself, exactly as ``views="none"`` computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from headstart.backbones.preprocess import ImagePreprocess

#: How many views each setting averages over.
VIEW_COUNTS = {"none": 1, "flip": 2, "flip+crops": 10}


def view_transform(preprocess: ImagePreprocess) -> Callable[[Any], torch.Tensor]:
    """The transform from a PIL image to its views ``[views, 3, H, W]``, normalized as ``preprocess`` says.

    The image is resized once (shorter side to ``input_size / crop_pct``); the views are crops of it: the
    centre crop (the evaluation view), then, for ``"flip"``, its mirror image, and for ``"flip+crops"`` also
    the four corner crops, each followed by its mirror image (torchvision's ten-crop).

    Example:
        >>> views = view_transform(ImagePreprocess(input_size=224, views="flip"))
        >>> views(open_image("cat.png")).shape
        torch.Size([2, 3, 224, 224])
    """
    from torchvision import transforms as T  # torchvision takes seconds to import: only when used
    from torchvision.transforms import functional as F

    size = preprocess.input_size
    resized = T.Compose([T.Resize(int(size / preprocess.crop_pct), interpolation=T.InterpolationMode(
        preprocess.interpolation)), T.ToTensor(), T.Normalize(preprocess.mean, preprocess.std)])
    views = preprocess.views

    def transform(image: Any) -> torch.Tensor:
        pixels = resized(image)
        centre = F.center_crop(pixels, [size, size])
        if views == "none":
            return centre[None]
        crops = [centre]
        if views == "flip+crops":
            crops += list(F.five_crop(pixels, [size, size]))[:4]  # five_crop ends with the centre crop
        return torch.stack([view for crop in crops for view in (crop, crop.flip(-1))])

    return transform
