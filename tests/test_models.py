import pytest
import torch

from labkit.models import available_models, build_model, count_parameters

EXPECTED_PARAMS = {
    "cnn": 62_006,
    "resnet18": 11_173_962,
    "plain18": 11_000_138,   # resnet18 less its three projection shortcuts (conv 1×1 + BN)
    "densenet_cifar": 1_000_618,
    "se_resnet18": 11_261_002,
}


@pytest.mark.parametrize("name", EXPECTED_PARAMS)
def test_parameter_counts(name):
    assert count_parameters(build_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("num_classes", [10, 7])
def test_output_shape(name, num_classes):
    model = build_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)


def test_registry_lists_the_five_models_and_the_shortcut_control():
    assert available_models() == ["cnn", "resnet18", "plain18", "densenet_cifar", "se_resnet18",
                                  "se_resnet18_imagenet_stem"]


def test_plain18_is_resnet18_without_shortcuts():
    plain, residual = build_model("plain18"), build_model("resnet18")
    assert not any("shortcut" in name for name, _ in plain.named_modules())
    # every other weight has the same name and shape: only the shortcuts differ
    kept = {k: v.shape for k, v in residual.state_dict().items() if "shortcut" not in k}
    assert {k: v.shape for k, v in plain.state_dict().items()} == kept


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18.*densenet_cifar"):
        build_model("resnet19")


def test_imagenet_stem_shrinks_to_8x8():
    model = build_model("se_resnet18_imagenet_stem")
    assert model.stem(torch.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)
    # the 7×7 stem costs 64·3·49 − 64·3·9 more weights than the 3×3 one
    assert count_parameters(model) - EXPECTED_PARAMS["se_resnet18"] == 64 * 3 * (49 - 9)


def test_se_gates_rescale_channels():
    from labkit.models.se_resnet import SqueezeExcitation
    se = SqueezeExcitation(32)
    x = torch.randn(4, 32, 5, 5)
    se.record_gates = True
    y = se(x)
    gates = se.last_gates
    assert gates.shape == (4, 32) and bool(((gates > 0) & (gates < 1)).all())
    torch.testing.assert_close(y, x * gates[:, :, None, None])


def test_resnet_projection_only_when_shape_changes():
    model = build_model("resnet18")
    assert isinstance(model.layer1[0].shortcut, torch.nn.Identity)
    assert isinstance(model.layer2[0].shortcut[0], torch.nn.Conv2d)
    assert model.layer2[0].shortcut[0].kernel_size == (1, 1)


def test_memory_efficient_densenet_matches_normal():
    torch.manual_seed(0)
    normal = build_model("densenet_cifar")
    efficient = build_model("densenet_cifar", memory_efficient=True)
    efficient.load_state_dict(normal.state_dict())
    x = torch.randn(4, 3, 32, 32)
    out_n, out_e = normal(x), efficient(x)
    torch.testing.assert_close(out_n, out_e)
    out_n.square().sum().backward()
    out_e.square().sum().backward()
    torch.testing.assert_close(normal.features[0].weight.grad, efficient.features[0].weight.grad,
                               rtol=1e-4, atol=1e-5)


def test_gate_statistics_find_blocks_whose_gates_are_a_constant_half():
    from labkit.models.inspect import excitation_by_class, gate_reading, gate_statistics, se_gates
    from labkit.models.se_resnet import SqueezeExcitation
    torch.manual_seed(0)
    model = build_model("se_resnet18")
    images, labels = torch.randn(40, 3, 32, 32), torch.arange(40) % 10
    table = gate_statistics(se_gates(model, images, batch_size=16))
    assert list(table.index) == [f"layer{s}.{b}" for s in range(1, 5) for b in (0, 1)]
    assert ((table["min"] > 0) & (table["max"] < 1)).all() and (table["sd over images"] > 0).all()
    with torch.no_grad():                           # excitation weights decayed to zero: every gate is sigmoid(0)
        for m in model.modules():
            if isinstance(m, SqueezeExcitation):
                m.excite[2].weight.zero_()
    gates = se_gates(model, images)
    flat = gate_statistics(gates)
    assert (abs(flat["mean gate"] - 0.5) < 1e-6).all()
    assert (flat[["sd over images", "sd over channels"]] < 1e-6).all().all()
    assert gate_reading(flat).startswith("8 of 8 SE blocks")
    assert excitation_by_class(gates, labels)["layer1.0"].shape == (10, 64)
    assert model.training                              # measured in eval mode, handed back as it was


def test_the_classes_are_split_by_their_gate_profiles_and_the_reading_names_the_groups():
    import pandas as pd

    from labkit.models.inspect import class_reading, class_split, last_blocks

    classes = ["airplane", "automobile", "bird", "cat"]
    torch.manual_seed(0)
    pattern = torch.rand(16)
    vehicles, animals = 0.5 + 0.3 * (pattern - 0.5), 0.5 - 0.3 * (pattern - 0.5)
    profiles = torch.stack([vehicles, vehicles + 0.01, animals, animals - 0.01])
    first, second, share = class_split(profiles, classes)
    assert (first, second) == (["airplane", "automobile"], ["bird", "cat"]) and share > 0.99
    assert class_split(torch.full((4, 16), 0.5), classes)[2] == 0.0     # all rows alike: no split to speak of
    table = pd.DataFrame({"sd over classes": [0.001, 0.2, 0.03],
                          "class split": ["airplane / automobile, bird, cat", "airplane, automobile / bird, cat",
                                          "airplane, bird / automobile, cat"],
                          "split share": [0.4, 0.97, 0.5]}, index=["layer1.1", "layer4.1", "layer4.0"])
    assert last_blocks(table.index) == ["layer1.1", "layer4.1"]
    reading = class_reading(table, ["layer1.1", "layer4.1", "layer4.0"])
    assert "averaged over channels): layer4.1 0.200, layer4.0 0.030, layer1.1 0.001." in reading
    assert ("layer4.1's classes fall into two groups, (airplane, automobile) and (bird, cat) (97% of the variance"
            in reading)
    assert "layer4.0's classes fall into two groups, (airplane, bird) and (automobile, cat)" in reading
    assert "Below 0.02 (layer1.1) the rows hardly differ" in reading
    table.loc["layer4.0", "class split"] = table.loc["layer4.1", "class split"]
    assert "layer4.0's into the same two (50%)" in class_reading(table, ["layer1.1", "layer4.1", "layer4.0"])


def test_the_gate_reading_tells_flat_blocks_from_fixed_per_channel_and_per_image_ones():
    import pandas as pd

    from labkit.models.inspect import gate_reading
    table = pd.DataFrame({"mean gate": [0.5, 0.5, 0.45], "sd over images": [0.01, 0.02, 0.2],
                          "sd over channels": [0.01, 0.3, 0.1], "min": [0.2, 0.1, 0.0], "max": [0.7, 0.9, 1.0]},
                         index=["layer1.0", "layer1.1", "layer2.0"])
    reading = gate_reading(table)
    assert reading.startswith("1 of 3 SE blocks (layer1.0) has flat gates")
    assert "it scales its residual by about one half, almost whatever the image; a few single gates still stray, " \
           "from 0.200 to 0.700 in layer1.0 (the extremes over every image and channel)." \
           in reading                                                        # one flat block: no narrowest to name
    assert "1 of 3 SE blocks (layer1.1) scales each channel by its own amount" in reading
    assert reading.endswith("1 of 3 SE blocks (layer2.0) gates channels differently per image.")
    two_flat = table.assign(**{"sd over channels": [0.01, 0.01, 0.1], "min": [0.2, 0.499, 0.0],
                               "max": [0.7, 0.502, 1.0], "sd over images": [0.01, 0.0, 0.2]})
    assert ("in layer1.0 (the extremes over every image and channel), while every gate of layer1.1 lies between "
            "0.499 and 0.502.") in gate_reading(two_flat)
