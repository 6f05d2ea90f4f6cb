"""Real test data from package registries (see ``services.demo.assets``): BlazeFace and the pose
detector from the mediapipe 0.10.21 wheel, photos from the scikit-image 0.26.0 wheel."""

from services.demo.assets import (
    ASSETS,
    BLAZEFACE_MEMBER,
    CACHE,
    MEDIAPIPE,
    POSE_MEMBER,
    SKIMAGE,
    WHEELS,
    astronaut,
    blazeface,
    cameraman,
    member,
    pose_detector,
    wheel,
)

__all__ = [
    "ASSETS",
    "BLAZEFACE_MEMBER",
    "CACHE",
    "MEDIAPIPE",
    "POSE_MEMBER",
    "SKIMAGE",
    "WHEELS",
    "astronaut",
    "blazeface",
    "cameraman",
    "member",
    "pose_detector",
    "wheel",
]
