"""`python -m launcher run | test [pytest args] | servers-only [--ephemeral] | flask [flask args]` (kassa.py execs
this in .venv)."""
import argparse
import os
import sys

from launcher import LauncherError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kassa.py", description="Run or test Kassa with embedded servers.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start Kassa with demo data (data kept in .kassa/ or $KASSA_DATA_DIR)")
    sub.add_parser("test", help="run pytest against ephemeral servers; extra arguments go to pytest",
                   add_help=False)
    servers = sub.add_parser("servers-only", help="start and provision PostgreSQL + Redis, print the environment")
    servers.add_argument("--ephemeral", action="store_true", help="temporary data, removed on exit")
    sub.add_parser("flask", help="a flask command in Kassa's environment (that of the running `run`); "
                   "extra arguments go to flask", add_help=False)
    if argv[:1] in (["test"], ["flask"]):  # everything after belongs to pytest or flask, --help included
        args, rest = argparse.Namespace(command=argv[0]), argv[1:]
    else:
        args, rest = parser.parse_args(argv), []

    from launcher import commands

    os.umask(0o077)  # data, logs and secrets that the launcher and its children write stay private

    try:
        if args.command == "flask":
            return commands.cmd_flask(rest)
        if args.command == "run":
            return commands.cmd_run()
        if args.command == "test":
            return commands.cmd_test(rest)
        return commands.cmd_servers_only(args.ephemeral)
    except LauncherError as exc:
        print(f"kassa: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
