"""Named studies: one module per study, module name == study name, each defining ``STUDY``."""
