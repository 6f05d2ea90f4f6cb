"""The OpenVINO Model Server model repository, in one place: ``config.json`` (typed models and
its JSON Schema), the value formats OVMS parses (``shape``, ``batch_size``, ``layout``), the
numbered version folders and the version policies. The zoo validates with it before it writes
``config.json``; the infer worker reads with it; both behave as OVMS does.

::

    models/
      config.json            {"model_config_list": [{"config": {"name": ..., "base_path": ...}}]}
      <name>/1/model.xml     one numbered folder per version; complete when its model files are
      <name>/1/model.bin     all there (see versions.MODEL_FILE_SETS)

A file that is not JSON or not an OVMS config is refused as a whole; a model entry that does not
parse is skipped and reported (:class:`EntryProblem`), the other entries are served.
"""

from ovbus.model_repository.config import ConfigFile, ModelConfig, config_schema
from ovbus.model_repository.repository import (
    EntryProblem,
    Layout,
    ModelEntry,
    Repository,
    fingerprint,
    parse_config,
    parse_entry,
    read_config,
    resolve,
    validate_config,
)
from ovbus.model_repository.values import Dim, Shape, parse_batch_size, parse_layout, parse_shape
from ovbus.model_repository.versions import (
    DEFAULT_POLICY,
    MODEL_FILE_SETS,
    VersionPolicy,
    complete_versions,
    current_version,
    model_file,
    policy_problem,
    served_versions,
    version_folders,
)

__all__ = [
    "DEFAULT_POLICY",
    "MODEL_FILE_SETS",
    "ConfigFile",
    "Dim",
    "EntryProblem",
    "Layout",
    "ModelConfig",
    "ModelEntry",
    "Repository",
    "Shape",
    "VersionPolicy",
    "complete_versions",
    "config_schema",
    "current_version",
    "fingerprint",
    "model_file",
    "parse_batch_size",
    "parse_config",
    "parse_entry",
    "parse_layout",
    "parse_shape",
    "policy_problem",
    "read_config",
    "resolve",
    "served_versions",
    "validate_config",
    "version_folders",
]
