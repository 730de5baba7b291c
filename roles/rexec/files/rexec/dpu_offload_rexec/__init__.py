# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec: authenticated remote execution between a HOST and its DPU (see docs/rexec.md, "Layout").

The programs rexec, rexec_server, rexec_forward and rexec_fiforelay are
launchers beside this package that call its front ends.  Nothing is imported
here: each program loads only the modules it needs (the client's start-up
time matters).  Python 3.9+ standard library only.
"""
