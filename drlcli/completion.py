"""Shell completion for `drl`: `drl completion bash|zsh` prints a script; the script asks
`drl __complete SHELL` (with the command line up to the cursor in ``COMP_LINE`` /
``COMP_POINT``) for the candidates, so completion follows the installed configs: subcommands,
config groups and their options (``algo=ppo``), config keys of the selected algo and env
(``algo.learning_rate=``), search spaces and `drl tune` / `drl compare` / `drl eval` options.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from drlcli.errors import DrlError

SHELLS = ("bash", "zsh")

BASH_SCRIPT = """\
# drl bash completion (drl completion bash). Install for your user:
#   drl completion bash --install     (bash-completion loads it on demand), or
#   echo 'eval "$(drl completion bash)"' >> ~/.bashrc
_drl_complete() {
    local IFS=$'\\n'
    COMPREPLY=($(COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" \\
        "${COMP_WORDS[0]}" __complete bash 2>/dev/null))
}
complete -o default -o nospace -F _drl_complete drl
"""

ZSH_SCRIPT = """\
#compdef drl
# drl zsh completion (drl completion zsh). Install for your user:
#   drl completion zsh --install      (writes ~/.zfunc/_drl; add `fpath+=~/.zfunc` before
#                                      `autoload -Uz compinit && compinit` in ~/.zshrc), or
#   echo 'eval "$(drl completion zsh)"' >> ~/.zshrc   (after compinit)
_drl() {
    local -a reply
    reply=("${(@f)$(COMP_LINE="${BUFFER[1,CURSOR]}" COMP_POINT="$CURSOR" \\
        "${words[1]}" __complete zsh 2>/dev/null)}")
    if (( ${#reply} )) && [[ -n "${reply[1]}" ]]; then
        compadd -S '' -- "${reply[@]}"
    else
        _files
    fi
}
if [[ "${funcstack[1]}" == "_drl" ]]; then _drl "$@"; else compdef _drl drl; fi
"""

COMMANDS = ("train", "tune", "list", "eval", "compare", "completion")
TOP_FLAGS = ("--help", "--version")
TRAIN_FLAGS = ("-m", "--multirun", "--cfg", "--help", "--hydra-help", "--info")
TUNE_FLAGS = (
    "--trials", "--sampler", "--pruner", "--startup-trials", "--seeds", "--jobs", "--study",
    "--storage", "--dir", "--sampler-seed", "--help",
)  # fmt: skip
EVAL_FLAGS = ("--episodes", "--stochastic", "--seed", "--video", "--checkpoint", "--device")
COMPARE_FLAGS = ("--metric", "--out", "--target", "--help")
FLAG_VALUES = {
    "--sampler": ("tpe", "random", "cmaes"),
    "--pruner": ("median", "halving", "hyperband", "none"),
    "--cfg": ("job", "hydra", "all"),
    "--device": ("cpu", "cuda", "auto"),
}
KEY_VALUES = {
    "log.progress": ("auto", "rich", "plain", "none"),
    "on_error": ("continue", "stop"),
    "hardware.vectorization": ("sync", "workers", "async", "envpool"),
    "hardware.device": ("cpu", "cuda", "auto"),
    "hardware.compile": ("none", "default", "reduce-overhead", "max-autotune"),
    "hardware.cpu_linear": ("auto", "onednn", "aten"),
}


def script(shell: str) -> str:
    """The completion script for ``shell`` (bash or zsh). Raises DrlError for other shells."""
    if shell == "bash":
        return BASH_SCRIPT
    if shell == "zsh":
        return ZSH_SCRIPT
    raise DrlError(f"No completion for shell '{shell}'. Valid choices: {', '.join(SHELLS)}.")


def install_path(shell: str) -> Path:
    """Where ``--install`` writes the script: bash-completion's per-user directory
    (``$XDG_DATA_HOME/bash-completion/completions/drl``, loaded on first use of `drl`), or
    ``~/.zfunc/_drl`` for zsh (a directory to put on ``fpath``)."""
    if shell == "bash":
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(data) / "bash-completion" / "completions" / "drl"
    if shell == "zsh":
        return Path.home() / ".zfunc" / "_drl"
    raise DrlError(f"No completion for shell '{shell}'. Valid choices: {', '.join(SHELLS)}.")


def cmd_completion(argv: list[str]) -> int:
    """`drl completion bash|zsh [--install]`: print the script, or write it where the shell
    finds it and say how it is loaded."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="drl completion",
        description="Print the shell completion script for drl (eval it in your shell's rc "
        "file), or --install it into your user's completion directory.",
    )
    parser.add_argument("shell", help="bash or zsh")
    parser.add_argument("--install", action="store_true", help="write it for your user")
    args = parser.parse_args(argv)
    text = script(args.shell)
    if not args.install:
        sys.stdout.write(text)
        return 0
    path = install_path(args.shell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if args.shell == "bash":
        hint = (
            "bash-completion loads it the next time you type `drl <TAB>` in a new shell (without "
            f"the bash-completion package: add `source {path}` to ~/.bashrc)."
        )
    else:
        hint = (
            f"add `fpath+={path.parent}` before `autoload -Uz compinit && compinit` in ~/.zshrc, "
            "then open a new shell."
        )
    print(f"drl: wrote {path}; {hint}")
    return 0


def _tokens(line: str) -> list[str]:
    """Words of a partial command line; the last is the word being completed ('' after a
    space). Unbalanced quotes are closed for splitting."""
    for closer in ("", '"', "'"):
        try:
            words = shlex.split(line + closer)
            break
        except ValueError:
            continue
    else:
        words = line.split()
    if not line or line[-1].isspace():
        words.append("")
    return words


def _config_keys(words: list[str]) -> list[str]:
    """Flattened config keys of the algo/env/hardware chosen in ``words`` (defaults else)."""
    from drlcli.cli import GROUPS, _compose, group_options
    from drlcli.logger import flatten

    chosen = []
    for w in words:
        key, _, value = w.partition("=")
        if key in GROUPS and value in group_options(key):
            chosen.append(w)
    try:
        from omegaconf import OmegaConf

        cfg = _compose(chosen)
        return sorted(flatten(OmegaConf.to_container(cfg, resolve=False)))
    except Exception:
        return []


def candidates(words: list[str]) -> list[str]:
    """Completions of ``words[-1]`` given the words before it (``words[0]`` is the subcommand
    or the word being completed)."""
    from drlcli.cli import GROUPS, group_options

    cur = words[-1]
    if len(words) == 1:
        return [c for c in (*COMMANDS, *TOP_FLAGS) if c.startswith(cur)]
    command, prev = words[0], words[-2]
    if prev in FLAG_VALUES:
        return [v for v in FLAG_VALUES[prev] if v.startswith(cur)]
    if command == "completion":
        return [s for s in (*SHELLS, "--install") if s.startswith(cur)]
    if command == "tune" and len(words) == 2 and not cur.startswith("-"):
        from drlcli.tune import search_names

        return [n for n in search_names() if n.startswith(cur)]
    if cur.startswith("-"):
        flags = {
            "train": TRAIN_FLAGS,
            "tune": TUNE_FLAGS,
            "eval": EVAL_FLAGS,
            "compare": COMPARE_FLAGS,
        }.get(command, ("--help",))
        return [f for f in flags if f.startswith(cur)]
    if command not in ("train", "tune"):
        return []  # paths: the shell completes file names
    key, eq, value = cur.partition("=")
    if eq:
        if key in (*GROUPS, "tuned"):
            return [f"{key}={o}" for o in group_options(key) if o.startswith(value)]
        return [f"{key}={v}" for v in KEY_VALUES.get(key, ()) if v.startswith(value)]
    groups = [f"{g}=" for g in GROUPS]
    keys = [f"{k}=" for k in _config_keys(words[1:-1])] if "." in cur or len(cur) >= 1 else []
    out = [c for c in (*groups, *keys) if c.startswith(cur)]
    return sorted(set(out), key=out.index)


def cmd_complete(argv: list[str]) -> int:
    """`drl __complete bash|zsh`: print one candidate per line for the line in $COMP_LINE up to
    $COMP_POINT. For bash, each candidate starts after the last '=' or ':' of the current word
    (bash splits words there: COMP_WORDBREAKS)."""
    shell = argv[0] if argv else "bash"
    line = os.environ.get("COMP_LINE", "")
    point = os.environ.get("COMP_POINT", "")
    if point.isdigit():
        line = line[: int(point)]
    words = _tokens(line)[1:]  # drop the program name
    if not words:
        words = [""]
    out = candidates(words)
    if shell == "bash":
        cur = words[-1]
        cut = max(cur.rfind("="), cur.rfind(":")) + 1
        out = [c[cut:] for c in out]
    sys.stdout.write("".join(c + "\n" for c in out))
    return 0
