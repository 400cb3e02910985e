"""The evaluation pipeline: options and their checks, the runner, gradients, the geometry cache, metric/score/manifold/attribution interfaces, aggregation and sanity flags."""
