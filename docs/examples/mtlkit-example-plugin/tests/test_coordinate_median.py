"""The whole mtlkit property suite for this plugin's aggregator, in one line."""

from mtlkit_example_plugin import CoordinateMedian

from mtlkit.testing.pytest_plugin import aggregator_suite

test_coordinate_median = aggregator_suite(CoordinateMedian, max_examples=15)
