"""bench/bench_storage.py's reading of its workload's output (a real sample from the lab's HOST)."""
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import bench_storage  # noqa: E402  pylint: disable=wrong-import-position

SAMPLE = 'write 150712\nread 5324\ncreate 1371306\nstat 58725\nread_small 20497\ndelete 50509\nfind 98670\n'


def test_each_row_in_seconds():
    figures = bench_storage.parse('some noise\n' + SAMPLE)
    assert figures == {'write': 0.150712, 'read': 0.005324, 'create': 1.371306, 'stat': 0.058725,
                       'read_small': 0.020497, 'delete': 0.050509, 'find': 0.09867}


def test_a_missing_row_is_an_error_naming_it():
    with pytest.raises(ValueError, match='no figure for find'):
        bench_storage.parse(SAMPLE.replace('find 98670\n', ''))


def test_a_non_ascii_number_is_not_a_figure():
    with pytest.raises(ValueError, match='no figure for write'):
        bench_storage.parse(SAMPLE.replace('write 150712', 'write \u0663'))


def test_medians_per_row():
    runs = [bench_storage.parse(SAMPLE), bench_storage.parse(SAMPLE.replace('write 150712', 'write 1000000')),
            bench_storage.parse(SAMPLE.replace('write 150712', 'write 2000'))]
    assert bench_storage.medians(runs)['write'] == 0.150712


def test_a_quick_image_never_stands_in_for_the_full_one():
    assert bench_storage.fat_image(20) != bench_storage.fat_image(2000)
