"""Cross-group rules, one module per job, checked before any model loads and reported together.

Single-key problems (unknown keys, wrong types, bad enum values) fail at composition through the
typed schemas in `medtune.config`; what is left here needs more than one key, the file system or
the machine (CUDA devices, installed packages, the local Hugging Face cache, a checkpoint's own
config). Each job in `medtune.jobs` names its rule list; the entry layer runs it.

Layering: these modules import `medtune.config`, the model description and the run-dir reader,
never a task module (training, evaluation, qa, judge, sweep).
"""
