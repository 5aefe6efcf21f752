"""The whole mtlkit property suite for this plugin's aggregator, in one line."""

from mtlkit.testing.pytest_plugin import aggregator_suite
from mtlkit_example_plugin import CoordinateMedian

test_coordinate_median = aggregator_suite(CoordinateMedian, max_examples=15)
