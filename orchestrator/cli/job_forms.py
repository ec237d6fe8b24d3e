"""How hints name the job commands: the CLI's `lr fg S… N` or the shell's `fg N`."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class JobForms:
    """How the job commands are typed where a message is shown: `lr fg S1 2` at a terminal,
    `fg 2` inside `lr shell`, so every hint names a form that works where it is read."""

    session_id: str
    in_shell: bool = False

    def jobs(self) -> str:
        return "jobs" if self.in_shell else f"lr jobs {self.session_id}"

    def fg(self, job: object) -> str:
        return f"fg {job}" if self.in_shell else f"lr fg {self.session_id} {job}"

    def cancel(self, job: object) -> str:
        return f"cancel {job}" if self.in_shell else f"lr cancel {self.session_id} {job}"

    def rewrite(self, text: str) -> str:
        """`text` (an orchestrator's message or hint, which names the CLI's forms) with this
        session's `lr jobs|fg|cancel S…` turned into the forms that work here."""
        if not self.in_shell:
            return text
        sid = re.escape(self.session_id)
        text = re.sub(rf"\blr (fg|cancel) {sid} (\d+)", r"\1 \2", text)
        return re.sub(rf"\blr jobs {sid}\b", "jobs", text)
