"""Checkpoints that a kill cannot corrupt.

SpeechBrain's :class:`~speechbrain.utils.checkpoints.Checkpointer` writes a checkpoint folder's
``CKPT.yaml`` first and the state files after it, so a process killed while saving leaves a
folder that looks finished and holds a half-written file; the next run would load it and crash
(or worse, load a truncated state). :class:`AtomicCheckpointer` records ``atomic: true`` in
``CKPT.yaml`` (written first) and a ``COMPLETE`` marker (fsynced, with the state files) after the
last state file; it lists a folder it wrote only once the marker is there. One without it is
renamed ``INCOMPLETE+<name>`` (kept for inspection, never loaded) with a warning, so a resumed run
starts from the last complete checkpoint. Folders written before (no ``atomic`` key) are listed as
SpeechBrain lists them.
"""

from __future__ import annotations

import logging
import os

from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

__all__ = ["AtomicCheckpointer", "COMPLETE"]

logger = logging.getLogger("speechbrain_codec")
COMPLETE = "COMPLETE"


def _atomic(folder) -> bool:
    """Whether ``folder`` was written by :class:`AtomicCheckpointer` (its CKPT.yaml says so; a
    folder whose CKPT.yaml is missing or unreadable counts as interrupted)."""
    import yaml

    try:
        meta = yaml.safe_load((folder / "CKPT.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return True
    return not isinstance(meta, dict) or bool(meta.get("atomic", False))


class AtomicCheckpointer(Checkpointer):
    """A :class:`Checkpointer` whose checkpoints count only once completely written.

    Example
    -------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> ck = AtomicCheckpointer(d, {"lin": torch.nn.Linear(2, 2)})
    >>> saved = ck.save_checkpoint()
    >>> (saved.path / COMPLETE).is_file(), len(ck.list_checkpoints())
    (True, 1)
    >>> (saved.path / COMPLETE).unlink()  # as if killed before the end of the save
    >>> ck.list_checkpoints()
    []
    """

    def save_checkpoint(self, meta={}, *args, **kwargs):  # noqa: B006 (speechbrain's signature)
        ckpt = super().save_checkpoint({**meta, "atomic": True}, *args, **kwargs)
        if ckpt is not None:  # the main process, once every state file is written
            for path in ckpt.paramfiles.values():
                if path.is_file():
                    with open(path, "rb+") as f:
                        os.fsync(f.fileno())
            with open(ckpt.path / COMPLETE, "w", encoding="utf-8") as f:
                f.write("complete\n")
                f.flush()
                os.fsync(f.fileno())
        # under torchrun every process must list the same checkpoints (speechbrain's deletion
        # broadcasts once per checkpoint): none goes on before the marker is written
        ddp_barrier()
        return ckpt

    def _list_checkpoint_dirs(self):
        return [d for d in super()._list_checkpoint_dirs() if (d / COMPLETE).is_file() or not _atomic(d)]

    def recover_if_possible(self, *args, **kwargs):
        """As speechbrain's, after moving interrupted checkpoints aside (main process; every
        process calls this, as speechbrain's own)."""
        if if_main_process():
            for d in super()._list_checkpoint_dirs():
                if not (d / COMPLETE).is_file() and _atomic(d):
                    target = d.with_name(f"INCOMPLETE+{d.name}")
                    logger.warning("%s: an interrupted save (no %s marker); moved to %s and not loaded", d, COMPLETE,
                                   target)
                    try:
                        os.replace(d, target)
                    except OSError:  # the target exists: the folder is skipped either way
                        pass
        ddp_barrier()
        return super().recover_if_possible(*args, **kwargs)
