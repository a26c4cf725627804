"""Whether a call may be answered though its audit event could not be stored.

By default no: a call's success is reported only once its event is stored, so no value is
handed out unrecorded (the caller gets UNAVAILABLE; a change the call made stays made: retry it
with version_check). With `audit_reads: best_effort` an objects:read call is answered all the
same, and the lost event logged.
"""

from __future__ import annotations

import logging

from vaultd.api.rpcs import Rpc
from vaultd.core.apikeys import Permission

log = logging.getLogger(__name__)


class ReadAuditPolicy:
    def __init__(self, *, reads_best_effort: bool = False) -> None:
        self._reads_best_effort = reads_best_effort

    def answer_unrecorded(self, method: str, rpc: Rpc) -> bool:
        """Whether to answer `method` without its event (and say so in the log)."""
        if self._reads_best_effort and rpc.permission is Permission.OBJECTS_READ:
            log.error(
                "answered %s without its audit event (audit_reads: best_effort): the"
                " event could not be stored",
                method,
            )
            return True
        log.error("withheld the result of %s: its audit event could not be stored", method)
        return False
