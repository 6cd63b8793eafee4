"""``aligner demo``: the command that builds the demo page (:mod:`aligner.demo.page`) and serves it."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..contracts.config_parser import add_config_command, build_config
from .page import DemoConfig, create_demo, launch


def run_demo(args: argparse.Namespace) -> int:
    from ..core.commands import print_notes

    cfg = build_config(DemoConfig, args, getattr(args, "config", None))
    demo = create_demo(config=cfg)
    print_notes(demo.aligner)
    launch(demo, host=cfg.host, port=cfg.port, block=False, share=cfg.share)
    print(f"aligner demo: {demo.local_url.rstrip('/')}", file=sys.stderr)
    if not cfg.share:
        print("  add --share for a temporary public link (anyone with it can use this page)", file=sys.stderr)
    elif demo.share_url:
        print(f"  public link: {demo.share_url} (temporary; anyone with it can use this page)", file=sys.stderr)
    else:
        print("  --share: no public link could be made (see above); the page is served locally only",
              file=sys.stderr)
    sys.stderr.flush()
    demo.block_thread()
    return 0


DESCRIPTION = """\
Gradio demo: ask a question, watch the Aligner correct the upstream's answer. \
Runs offline with the built-in upstream and the embedded demo corrector. Examples:
  aligner demo
  aligner demo --upstream http://localhost:8001/v1 --upstream-model llama3
  aligner demo --corrector aligner/aligner-7b-v1.0 --port 7861
  aligner demo --gate none   # no gate: correct every answer
  aligner demo --corrector small/ --corrector large/   # stacked: each step's edits shown
  aligner demo --corrector M --template metaaligner --objective harmless   # objectives to choose from
  aligner demo --share   # also on a temporary public gradio.live link"""


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 60


def add_commands(sub: Any) -> None:
    add_config_command(sub, "demo", DemoConfig, run_demo, description=DESCRIPTION,
                       help="a web page showing answers and their corrections side by side (Gradio)")
