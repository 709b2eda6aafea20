"""`jepa-jax <command> [flags]`: the command-line entry point.

Each command is a module under `jepa_jax.commands` with absl flags and a `main(argv)`; only the
chosen command's module is imported, so each command's flags are its own. Bad input (an unknown
flag or config key, an unparsable or invalid value) is reported as one line, exit status 2.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("jepa_jax.commands.train", "pretrain I-JEPA / V-JEPA from a config (resumes)"),
    "compile": (
        "jepa_jax.commands.compile",
        "compile the train step for a TPU topology: memory, FLOPs",
    ),
    "prepare": ("jepa_jax.commands.prepare", "decode a video folder once into ArrayRecord shards"),
    "plan": (
        "jepa_jax.commands.plan",
        "plan with a trained world model in Two Rooms (CEM/MPPI/search)",
    ),
    "eval": ("jepa_jax.commands.eval", "frozen probes (linear, attentive, kNN) of a checkpoint"),
    "export": ("jepa_jax.commands.export", "write a run's target encoder for downstream use"),
    "import": ("jepa_jax.commands.import_weights", "convert released PyTorch / HF JEPA weights"),
}

PROG = "jepa-jax"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        f"usage: {PROG} <command> [flags]   ({PROG} <command> --help for its flags)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def fail(command: str, message: str) -> None:
    """Print a one-line error and exit with status 2."""
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    sys.exit(2)


def flag_error_message(error: Exception) -> str:
    """One line from an absl flag error; a config file's own exception (whose traceback
    ml_collections embeds in the message) is reduced to its final line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if not lines:
        return repr(error)
    if any(ln.startswith("Traceback") for ln in lines):
        return f"{lines[0]} {lines[-1]}"
    return " ".join(lines)


def override_without_config_message(args: list[str], error: Exception) -> str | None:
    """The error for --config.<key>=<value> given to a command whose --config has no default
    and was not given (absl calls the override an unknown flag), or None for any other error."""
    override = next((a for a in args if a.startswith("--config.")), None)
    if override is None or "Unknown command line flag 'config." not in str(error):
        return None
    return (
        f"{override} overrides a field of --config, which is not given: pass the config file "
        "too (--config=configs/<file>.py[:arg])"
    )


def unknown_config_key_message(args: list[str], error: Exception) -> str:
    """'unknown config key in --config.optim.lrr=3 (did you mean "lr"?)' from ml_collections'
    KeyError/AttributeError text, which quotes the key and may add a did-you-mean hint."""
    text = str(error.args[0]) if error.args else str(error)
    text = text.replace("\\n", "\n").replace("\\'", "'")
    lines = [ln.strip().strip("'\"") for ln in text.splitlines() if ln.strip()]
    key = lines[0] if lines else "?"
    hint = next((ln for ln in lines[1:] if ln.lower().startswith("did you mean")), "")
    flag = next((a for a in args if a.startswith("--config.") and key in a), f"--config...{key}")
    message = f"unknown config key {key!r} in {flag}"
    if hint:
        message += f" ({hint[0].lower()}{hint[1:]})"
    return message + "; the config is locked, so only existing keys can be set"


def command_help(command: str, module) -> str:
    """`jepa-jax <command> --help`: the command's docstring and its own flags (absl's --help
    lists only the main script's, and --helpfull buries them under absl's ~60)."""
    from absl import flags

    doc = (module.__doc__ or "").strip()
    lines = [doc, "", f"flags of {PROG} {command}:"]
    body = flags.FLAGS.module_help(module.__name__).strip().splitlines()[1:]  # drop module name
    lines += body or ["  (none)"]
    lines += [
        "",
        f"global: {PROG} --verbose {command} ... shows libraries' logs (TensorFlow, libtpu, absl "
        "INFO); --helpfull lists absl's own flags.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    # --verbose is global: it may stand before or after the command.
    verbose = any(a in ("--verbose", "--verbose=true") for a in argv[1:])
    argv = [argv[0]] + [a for a in argv[1:] if a not in ("--verbose", "--verbose=true")]
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(
            f"{PROG}: error: unknown command {command!r}; expected one of {sorted(COMMANDS)}",
            file=sys.stderr,
        )
        sys.exit(2)
    # Before anything starts a JAX backend or imports a native library.
    from jepa_jax import startup

    startup.configure(verbose)
    from jepa_jax.signals import Interrupted, interruptible

    # A stop signal during start-up (imports, set-up, compilation) ends the command cleanly.
    with interruptible():
        try:
            _run_command(command, argv)
        except Interrupted as e:
            print(
                f"{PROG} {command}: {e} outside the training steps; checkpoints already saved "
                "are kept, nothing is half-written",
                file=sys.stderr,
            )
            sys.exit(0)


def _run_command(command: str, argv: list[str]) -> None:
    from absl import app, flags

    from jepa_jax.errors import ConfigError, RunError

    module = importlib.import_module(COMMANDS[command][0])
    args = argv[2:]
    if any(a in ("-h", "--help", "-help", "--helpshort") for a in args):
        print(command_help(command, module))
        sys.exit(0)

    def parse_flags(args: list[str]) -> list[str]:
        try:
            # A command may settle its flags from the arguments first (eval: the run's own
            # config as --config when only overrides are given).
            if hasattr(module, "prepare_flags"):
                module.prepare_flags(args[1:])
            return flags.FLAGS(args)
        except flags.Error as e:
            fail(command, override_without_config_message(args, e) or flag_error_message(e))
        except (AttributeError, KeyError) as e:
            # ml_collections reports an unknown --config.<key> this way (locked config).
            fail(command, unknown_config_key_message(args, e))
        except SyntaxError as e:  # a config file that does not parse
            fail(command, f"config file {e.filename} line {e.lineno}: {e.msg}")
        except ConfigError as e:  # from prepare_flags (e.g. no run config to override)
            fail(command, str(e))

    def run(args: list[str]) -> None:
        try:
            module.main(args)
        except ConfigError as e:
            fail(command, str(e))
        except RunError as e:
            print(f"{PROG} {command}: error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(run, argv=[f"{PROG} {command}"] + args, flags_parser=parse_flags)


if __name__ == "__main__":
    main()
