"""Root pytest configuration (applies to tests/ and the doctests in speechbrain_codec/)."""

import sys

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Drop speechbrain's not-yet-loaded lazy modules from ``sys.modules``.

    speechbrain registers optional integrations (e.g. ``speechbrain.integrations.k2_fsa``) as
    lazy modules whose attribute access raises ImportError when the optional package (k2) is
    absent. Hypothesis' pytest plugin reads ``__file__`` of every module in ``sys.modules`` at
    collection and would crash on them. Unloaded lazy modules hold nothing, so removing them
    changes no behaviour.
    """
    try:
        from speechbrain.utils.importutils import LazyModule
    except ImportError:
        return
    for name, module in list(sys.modules.items()):
        if isinstance(module, LazyModule) and getattr(module, "lazy_module", None) is None:
            del sys.modules[name]
