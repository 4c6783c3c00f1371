"""``python -m headstart`` and the ``headstart`` command: say at once that a command started, then run it.

Importing the command line loads PyTorch, timm and transformers; a command announces itself on stderr before
that (a spinner on a terminal, one line in a log), so its first output comes within a second, not after the
imports. The import below therefore follows that announcement on purpose.
"""

import sys

from headstart.progress import start_message, status
from headstart.tracking.worker import start_early

# A tracked command's MLflow worker imports MLflow on another core while this process imports the rest.
start_early(sys.argv[1:])
_message = start_message(sys.argv[1:])
with status(_message or "", enabled=_message is not None):
    from headstart.cli import main

if __name__ == "__main__":
    main()
