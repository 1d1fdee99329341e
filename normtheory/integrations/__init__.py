"""normtheory's hooks inside training frameworks (optional extras, imported on demand).

- `normtheory.integrations.lightning.NormtheoryCallback`: a PyTorch Lightning ``Callback``
  (``pip install normtheory[lightning]``).
- `normtheory.integrations.transformers.NormtheoryCallback`: a Hugging Face ``TrainerCallback``
  (``pip install normtheory[transformers]``).
- `normtheory.integrations.batches`: how a framework's batch (a tuple, a dict, a
  ``BatchEncoding``) reaches the hooks (`ArgBatch`, `KeywordBatch`), overridable.

Both callbacks take ``(hooks, sinks=None, ...)``, run the hooks at the framework's steps
through a `normtheory.hooks.Monitor` (``callback.monitor``, ``callback.frame()``) and leave
training bit-identical. Importing this package imports neither framework.
"""

from normtheory.integrations.batches import ArgBatch, KeywordBatch, KeywordModel

__all__ = ["ArgBatch", "KeywordBatch", "KeywordModel"]
