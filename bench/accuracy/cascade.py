"""The person -> face cascade case, through the product's own code path: the pipeline spec of
:func:`spec` (the person model on the frame, the face model on the frame and on the head region
of each person found: the top of the box, squared, grown a little) run model by model as a
camera's job runs it (:func:`services.infer.crops.run_step`: crops, mapping back into frame
pixels, merge). Nothing of the cascade is implemented here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import Crops, ModelStatus, PipelineModel, PipelineSpec
from services.infer.backend import Model
from services.infer.crops import Outcome, crop_regions, run_step

#: the head region and the person threshold of the case (as first measured; not tuned on test)
HEAD: Final = Crops(
    model="person-detection-ssdlite", labels=["person"], top=0.45, square=True, margin=0.1
)
PERSON_THRESHOLD: Final = 0.4

Found = list[tuple[list[int], float]]


@dataclass(frozen=True, slots=True)
class Stage:
    model: Model
    desc: ModelDescription
    name: str


def spec(face: str, person: str, threshold: float) -> PipelineSpec:
    """The cascade as a camera's pipeline spec: persons, then faces on their head regions."""
    return PipelineSpec(
        models=[
            PipelineModel(name=person, threshold=PERSON_THRESHOLD, labels=["person"]),
            PipelineModel(
                name=face,
                threshold=threshold,
                labels=["face"],
                on=HEAD.model_copy(update={"model": person}),
            ),
        ]
    )


def run_spec(
    pipeline: PipelineSpec, stages: dict[str, Stage], image: npt.NDArray[np.uint8]
) -> list[Outcome]:
    """Every model of ``pipeline`` on ``image`` in order, as the camera's job runs them."""
    done: list[Outcome] = []
    for pm in pipeline.models:
        stage = stages[pm.name]
        result = run_step(stage.model, stage.desc, image, pm, done)
        done.append((result, ModelStatus(name=pm.name, state="running")))
    return done


def faces(
    face: Stage, person: Stage, image: npt.NDArray[np.uint8], threshold: float
) -> tuple[Found, float, int]:
    """The faces the cascade finds on the frame, the inference time of every model run (ms: the
    person model, the face model on the frame and on each crop) and the number of runs."""
    pipeline = spec(face.name, person.name, threshold)
    outcomes = run_spec(pipeline, {face.name: face, person.name: person}, image)
    people, last = outcomes[0][0], outcomes[-1][0]
    assert people is not None and last is not None  # run_step raises rather than return None
    on = pipeline.models[-1].on
    assert on is not None
    crops = len(crop_regions(people, on, image.shape[1], image.shape[0]))
    ms = sum(r.inference_ms for r, _ in outcomes if r is not None)
    return [(o.box, o.score) for o in last.objects], ms, 2 + crops
