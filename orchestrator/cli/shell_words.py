"""The words `lr shell` understands besides the device's commands: its own commands, the aliases
analysts type out of habit, and `help`, generated from the command registry."""

from __future__ import annotations

from tasks.errors import UsageError
from tasks.registry import REGISTRY

#: The shell's own commands, with their usage and what they do (shown by `help`).
SHELL_COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("help [COMMAND]", "show this list, or one command's usage"),
    "jobs": ("jobs", "list this session's jobs"),
    "fg": ("fg N", "wait for job N (Ctrl-C cancels it, Ctrl-Z leaves it running)"),
    "cancel": ("cancel N", "stop job N (on the device too, when it is running)"),
    "cls": ("cls | clear", "clear the screen"),
    "exit": ("exit | quit", "close the session and leave"),
}
#: Other spellings of the shell's own commands.
SHELL_SYNONYMS = {"clear": "cls", "quit": "exit"}
#: What analysts type from other consoles, and the command it stands for here.
ALIASES: dict[str, str] = {
    "ls": "dir",
    "ps": "processes",
    "connections": "netstat",
    "cat": "cat",
}
#: What to do instead, for an alias whose command this orchestrator does not have.
ALIAS_FALLBACKS: dict[str, str] = {
    "cat": "copy the file with 'getfile PATH', then read it with 'lr evidence get'",
}


def shell_word(word: str) -> str | None:
    """The shell command `word` names (`clear` → `cls`), or None for a device command."""
    word = SHELL_SYNONYMS.get(word, word)
    return word if word in SHELL_COMMANDS else None


def expand_alias(line: str) -> str:
    """`line` with an alias as its first word replaced by the command it stands for."""
    stripped = line.lstrip()
    word, _, rest = stripped.partition(" ")
    target = ALIASES.get(word)
    if target is None or word in REGISTRY:
        return line
    if target not in REGISTRY:
        raise UsageError(f"{word}: this orchestrator has no {target} command",
                         hint=ALIAS_FALLBACKS.get(word, "type 'help' for the commands"))
    return f"{target} {rest}" if rest else target


def completion_words() -> list[str]:
    """Every word that may start a line: the registry's commands, the shell's, the aliases."""
    return sorted({*REGISTRY, *SHELL_COMMANDS, *SHELL_SYNONYMS,
                   *(a for a, t in ALIASES.items() if t in REGISTRY)})


def render_help(name: str | None = None) -> str:
    """Every command (the registry's, the shell's, the aliases), or one command's usage."""
    if name is None:
        shell_usages = [usage for usage, _ in SHELL_COMMANDS.values()] + ["LINE &"]
        width = max(len(u) for u in [*(s.usage for s in REGISTRY.values()), *shell_usages])
        lines = ["commands (run on the device):"]
        lines += [f"  {spec.usage.ljust(width)}  {spec.summary}" for spec in REGISTRY.values()]
        lines += ["shell:"]
        lines += [f"  {usage.ljust(width)}  {text}" for usage, text in SHELL_COMMANDS.values()]
        lines += [f"  {'LINE &'.ljust(width)}  run LINE in the background (a job); Ctrl-Z "
                  "sends a running command there, Ctrl-C cancels it"]
        aliases = [f"{a} = {t}" for a, t in ALIASES.items() if t in REGISTRY and a != t]
        if aliases:
            lines += [f"aliases: {', '.join(aliases)}"]
        return "\n".join(lines)
    word = shell_word(name)
    if word is not None:
        usage, text = SHELL_COMMANDS[word]
        return f"usage: {usage}\n  {text}"
    spec = REGISTRY.get(ALIASES.get(name, name)) or REGISTRY.get(name)
    if spec is None:
        raise UsageError(f"no command {name!r}", hint="type 'help' for the list")
    lines = [f"usage: {spec.usage}", f"  {spec.summary}"]
    for opt in spec.options:
        lines.append(f"  {opt.flag:<10} {opt.help}")
    return "\n".join(lines)
