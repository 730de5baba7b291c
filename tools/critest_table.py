# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""critest's JUnit reports of one run, side by side: specs passed, failed and skipped per runtime
handler, and the specs that pass on the local handler but fail offloaded.

  critest_table.py offloaded=DIR local=DIR [--json FILE]

Each DIR holds the junit_*.xml files critest wrote with -report-dir. Exit status 0.
"""

import json
import os
import sys
from xml.etree import ElementTree


def outcomes(directory):
    """{spec name: 'passed' | 'failed' | 'skipped'} from the JUnit files in directory."""
    found = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith('.xml'):
            continue
        tree = ElementTree.parse(os.path.join(directory, name))
        for case in tree.iter('testcase'):
            title = case.get('name', '')
            if title.startswith(('[BeforeSuite]', '[AfterSuite]', '[SynchronizedBeforeSuite]', '[ReportAfterSuite]')):
                continue
            if case.find('failure') is not None or case.find('error') is not None:
                state = 'failed'
            elif case.find('skipped') is not None:
                state = 'skipped'
            else:
                state = 'passed'
            found[title] = state
    return found


def compare(runs):
    """Rows of counts per handler, and the specs that pass locally and fail offloaded (sorted)."""
    rows = []
    for handler, specs in runs.items():
        counts = {state: sum(1 for s in specs.values() if s == state) for state in ('passed', 'failed', 'skipped')}
        rows.append(dict(handler=handler, total=len(specs), **counts))
    local, offloaded = runs.get('local', {}), runs.get('offloaded', {})
    regressions = sorted(spec for spec, state in local.items() if state == 'passed' and offloaded.get(spec) != 'passed')
    return rows, regressions


def render(rows, regressions):
    lines = ['handler     specs  passed  failed  skipped', '----------  -----  ------  ------  -------']
    for row in rows:
        lines.append('%-10s  %5d  %6d  %6d  %7d'
                     % (row['handler'], row['total'], row['passed'], row['failed'], row['skipped']))
    lines.append('')
    if regressions:
        lines.append('passed locally, not offloaded (%d):' % len(regressions))
        lines.extend('  - ' + spec for spec in regressions)
    else:
        lines.append('every spec that passed locally passed offloaded')
    return '\n'.join(lines)


def main(argv):
    runs, json_out = {}, None
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg == '--json':
            json_out = args.pop(0)
        elif '=' in arg:
            handler, directory = arg.split('=', 1)
            runs[handler] = outcomes(directory)
        else:
            sys.stderr.write(__doc__)
            return 2
    rows, regressions = compare(runs)
    print(render(rows, regressions))
    if json_out:
        with open(json_out, 'w', encoding='utf-8') as handle:
            json.dump({'rows': rows, 'regressions': regressions, 'specs': runs}, handle, indent=1, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
