"""How model options reach factories: pluggy-style (only factories naming ``options`` get them),
``BuiltModel`` cards, ``card.FIELD`` overrides, and the record in the result."""

import pytest

import pagbench
from pagbench import ModelCard, ModelEntry, hookimpl
from pagbench.errors import PagbenchError


def _plugin(factory):
    class Plugin:
        @staticmethod
        @hookimpl
        def register_models(register):
            register(ModelEntry("probe", factory, ModelCard("bayes wrapper", "synthetic", regime="bayes-optimal")))

    return Plugin()


def _bayes(dataset):
    from pagbench_plugins.synthetic.providers import BayesClassifier

    return BayesClassifier(dataset.distribution)


def test_factory_naming_options_receives_them_and_may_return_a_card(register_plugin):
    from pagbench.models.loading import BuiltModel, check_model_options

    seen = {}

    def factory(name, dataset, device, options):
        check_model_options(name, options, ("temperature",))
        seen.update(options)
        card = ModelCard("bayes wrapper", "synthetic", regime="bayes-optimal", provenance={"temperature": options.get("temperature")})
        return BuiltModel(_bayes(dataset), card)

    register_plugin(_plugin(factory), name="probe-plugin")
    result = pagbench.evaluate("probe", num_images=10, metrics=("accuracy",), model_options={"temperature": "2", "card.strength": "3"})
    assert seen == {"temperature": "2"}  # card.* options never reach the factory
    card = result["config"]["model_card"]
    assert card["provenance"] == {"temperature": "2"} and card["strength"] == 3.0
    assert result["config"]["model_options"] == {"temperature": "2", "card.strength": "3"}
    with pytest.raises(PagbenchError, match="model 'probe' does not take --weights"):
        pagbench.evaluate("probe", num_images=10, model_options={"weights": "w.pt"})


def test_factory_without_options_keeps_working_and_refuses_options(register_plugin):
    register_plugin(_plugin(lambda name, dataset, device: _bayes(dataset)), name="probe-plugin")
    result = pagbench.evaluate("probe", num_images=10, metrics=("accuracy",))
    assert result["config"]["model_card"]["requires_finetuning"] is False
    with pytest.raises(PagbenchError, match=r"model 'probe' takes no model options \(got --arch, --replace-head\)"):
        pagbench.evaluate("probe", num_images=10, model_options={"arch": "x", "replace_head": True})
