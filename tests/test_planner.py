"""The dry-run memory planner: exact counts on the meta device, quantized bytes, ZeRO, activations, verdicts.

Nothing here is mocked: counts come from transformers / PEFT models on the meta device and are checked
against real models, quantization constants against bitsandbytes' own quantizer, and the activation
formula against the tensors autograd really saves while real (tiny) models train on this CPU.
"""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from conftest import CONF
from medtune.config.schema import (
    Accelerator,
    AdapterConfig,
    AdapterKind,
    ArchitectureConfig,
    DeepSpeedConfig,
    DType,
    HardwareConfig,
    ModelConfig,
    Optimizer,
    Quantization,
    QuantizationConfig,
    TrainingConfig,
    TrainRunConfig,
)
from medtune.modeling.architecture import estimate_num_parameters
from medtune.modeling.planner import (
    DS_REDUCE_BUCKET_ELEMENTS,
    GIB,
    activation_estimate,
    count_parameters,
    estimate_memory,
    four_bit_bytes,
    int8_bytes,
    meta_model,
    plan,
    plan_text,
    precision,
)

LLAMA2_70B_TOTAL = 68_976_648_192
LLAMA2_70B_QLORA_TRAINABLE = 828_375_040


def model_config(name: str) -> ModelConfig:
    raw = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    return OmegaConf.to_object(raw)


def adapter_config(name: str, compute_dtype: str = "bfloat16", **overrides) -> AdapterConfig:
    raw = OmegaConf.merge(OmegaConf.structured(AdapterConfig), OmegaConf.load(CONF / "adapter" / f"{name}.yaml"))
    if name in ("qlora",):  # its compute dtype interpolates the hardware option's
        raw = OmegaConf.merge(raw, {"quantization": {"compute_dtype": compute_dtype}})
    return OmegaConf.to_object(OmegaConf.merge(raw, overrides))


def a100(devices: int = 4, zero: int = 3, checkpointing: bool = True) -> HardwareConfig:
    return HardwareConfig(
        name=f"a100x{devices}_zero{zero}",
        accelerator=Accelerator.cuda,
        devices_per_node=devices,
        num_nodes=1,
        device_name="NVIDIA A100-SXM4-80GB",
        device_memory_gib=80,
        compute_dtype=DType.bfloat16,
        gradient_checkpointing=checkpointing,
        deepspeed=DeepSpeedConfig(zero_stage=zero),
    )


def tokens(micro_batch: int = 1, inputs: int = 512, targets: int = 512) -> TrainingConfig:
    return TrainingConfig(
        micro_batch_size=micro_batch, global_batch_size=16, max_input_tokens=inputs, max_target_tokens=targets
    )


@pytest.fixture(scope="module")
def llama70b() -> ModelConfig:
    return model_config("llama2_70b")


@pytest.fixture(scope="module")
def llama70b_qlora_counts(llama70b):
    return count_parameters(llama70b.architecture, adapter_config("qlora"))


# ----------------------------------------------------------------------------------------------
# counts
# ----------------------------------------------------------------------------------------------


def test_llama2_70b_counts_are_exact_and_repeatable(llama70b, llama70b_qlora_counts):
    c = llama70b_qlora_counts
    arch = llama70b.architecture
    assert c.total == LLAMA2_70B_TOTAL == estimate_num_parameters(arch)
    assert c.trainable == LLAMA2_70B_QLORA_TRAINABLE
    assert c.adapter == c.trainable and c.frozen == c.total
    assert set(c.lora_targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    # every linear layer but lm_head is quantized: all but the two vocabulary matrices and the norms
    norms = (2 * arch.num_layers + 1) * arch.hidden_size
    assert c.linear_weights_quantizable == c.total - 2 * arch.vocab_size * arch.hidden_size - norms
    assert sum(n for _, n in c.quantizable_shapes) == 7 * arch.num_layers
    # a second build counts the same (its time is measured by benchmarks/planner_time.py, not asserted here)
    again = count_parameters(arch, adapter_config("qlora"))
    assert again == dataclasses.replace(c, seconds=again.seconds)


def test_lora_default_targets_count(llama70b):
    c = count_parameters(llama70b.architecture, adapter_config("lora"))  # r 8 on q_proj and v_proj
    arch = llama70b.architecture
    kv = arch.num_kv_heads * arch.hidden_size // arch.num_heads
    per_layer = 8 * (arch.hidden_size + arch.hidden_size) + 8 * (arch.hidden_size + kv)
    assert c.lora_targets == ("q_proj", "v_proj")
    assert c.trainable == arch.num_layers * per_layer


def test_tiny_counts_equal_the_formula_and_the_real_model(tiny_cache):
    from transformers import AutoModelForCausalLM

    from medtune.modeling.adapters import apply_adapter, parameter_counts
    from medtune.modeling.description import resolve_checkpoint

    tiny = model_config("tiny")
    checkpoint = resolve_checkpoint(tiny, tiny_cache)
    real = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True)
    counts = count_parameters(tiny.architecture, adapter_config("lora"))
    assert counts.total == estimate_num_parameters(tiny.architecture) == sum(p.numel() for p in real.parameters())
    trainable, total = parameter_counts(apply_adapter(real, adapter_config("lora"), gradient_checkpointing=False))
    assert (counts.trainable, counts.total + counts.adapter) == (trainable, total)
    assert count_parameters(tiny.architecture, adapter_config("full")).trainable == counts.total


@pytest.mark.parametrize("name", ["opencalm7b", "bloomz7b1_mt", "gptj6b_vi", "swallow70b"])
def test_other_families_build_on_meta_and_match_the_formula(name):
    arch = model_config(name).architecture
    model = meta_model(arch)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.config.model_type == arch.model_type
    assert count_parameters(arch, adapter_config("full")).total == estimate_num_parameters(arch)


def test_architecture_numbers_a_family_cannot_have_are_refused():
    from medtune.errors import ConfigError

    arch = dataclasses.replace(model_config("bloomz7b1_mt").architecture, intermediate_size=1000)
    with pytest.raises(ValueError, match="intermediate_size"):
        meta_model(arch)
    unknown = dataclasses.replace(model_config("tiny"), architecture=dataclasses.replace(arch, model_type="llamma"))
    with pytest.raises(ConfigError, match="model_type=llamma"):
        plan(TrainRunConfig(model=unknown, adapter=adapter_config("lora"), hardware=HardwareConfig(name="cpu")))


# ----------------------------------------------------------------------------------------------
# quantized bytes
# ----------------------------------------------------------------------------------------------


def test_four_bit_constants_by_hand_for_one_matrix():
    n = 8192 * 8192
    data, constants = four_bit_bytes(n, double_quant=True)
    assert data == n // 2 == 33_554_432
    blocks = n // 64  # 1,048,576 absmax values, 8-bit after double quantization
    assert constants == blocks * 1 + (blocks // 256) * 4 + 256 * 4 + 4 + 16 * 4 == 1_066_052
    assert four_bit_bytes(n, double_quant=False) == (n // 2, blocks * 4 + 16 * 4)
    assert four_bit_bytes(n, double_quant=True, storage_bytes=2)[0] == n // 2  # bf16 storage packs 4 a value
    assert int8_bytes(8192, 8192) == (n, 8192 * 4)


@pytest.mark.parametrize("double_quant", [True, False])
def test_four_bit_constants_equal_what_bitsandbytes_stores(double_quant):
    import torch
    from bitsandbytes.functional import quantize_4bit

    weight = torch.randn(384, 128)
    packed, state = quantize_4bit(weight, blocksize=64, compress_statistics=double_quant, quant_type="nf4")
    stored = [state.absmax, state.code, state.offset]
    if state.state2 is not None:
        stored += [state.state2.absmax, state.state2.code]
    constant_bytes = sum(t.numel() * t.element_size() for t in stored if isinstance(t, torch.Tensor))
    assert four_bit_bytes(weight.numel(), double_quant) == (packed.numel() * packed.element_size(), constant_bytes)


def test_four_bit_base_is_half_a_byte_per_linear_weight_plus_constants(llama70b, llama70b_qlora_counts):
    c = llama70b_qlora_counts
    memory = estimate_memory(llama70b.architecture, adapter_config("qlora"), a100(1, 0), tokens(), counts=c)
    constants = sum(n * four_bit_bytes(o * i, True)[1] for (o, i), n in c.quantizable_shapes)
    assert memory.quant_constants == constants
    # about 0.127 bits a weight: 8 bits per 64 weights plus 32 bits per 64 x 256
    assert abs(constants / c.linear_weights_quantizable - (1 / 64 + 4 / (64 * 256))) < 1e-4
    # prepare_model_for_kbit_training keeps the embeddings, norms and lm_head in float32
    expected = c.linear_weights_quantizable // 2 + constants + 4 * c.non_quantizable
    assert memory.base_weights == expected
    assert 33 * GIB < memory.base_weights < 36 * GIB


# ----------------------------------------------------------------------------------------------
# ZeRO
# ----------------------------------------------------------------------------------------------


def test_zero3_divides_parameters_by_the_world_size_and_zero2_does_not(llama70b, llama70b_qlora_counts):
    arch, c = llama70b.architecture, llama70b_qlora_counts
    adapter = adapter_config("qlora", quantization={"quant_storage": "bfloat16"})  # lets ZeRO-3 shard the 4-bit base
    plans = {zero: estimate_memory(arch, adapter, a100(4, zero), tokens(), counts=c) for zero in (0, 1, 2, 3)}
    data = c.linear_weights_quantizable // 2
    constants = plans[0].quant_constants
    nonq = 2 * c.non_quantizable  # DeepSpeed bf16 casts them
    assert plans[2].base_weights == plans[1].base_weights == data + constants + nonq
    assert plans[3].base_weights == data // 4 + constants + nonq // 4
    assert plans[3].trainable_weights == plans[2].trainable_weights // 4
    assert plans[2].gradients == plans[1].gradients // 4 and plans[3].gradients == plans[2].gradients
    # Adam m, v, float32 master weights and gradient partition, a quarter of them on each GPU from stage 1 on
    assert plans[1].optimizer_states == plans[3].optimizer_states == c.trainable * (8 + 4 + 4) // 4
    assert plans[0].optimizer_states == c.trainable * 8  # no DeepSpeed: float32 LoRA weights, plain AdamW
    assert plans[3].total < plans[2].total < plans[0].total


def test_zero3_shards_the_4bit_base_only_when_stored_in_the_compute_dtype(llama70b, llama70b_qlora_counts):
    arch, c = llama70b.architecture, llama70b_qlora_counts
    unset = estimate_memory(arch, adapter_config("qlora"), a100(4, 3), tokens(), counts=c)  # the loader picks bf16
    bf16 = estimate_memory(
        arch, adapter_config("qlora", quantization={"quant_storage": "bfloat16"}), a100(4, 3), tokens(), counts=c
    )
    assert unset == bf16 and not unset.notes
    assert unset.base_weights < c.linear_weights_quantizable // 2 // 3
    fp16 = estimate_memory(
        arch, adapter_config("qlora", quantization={"quant_storage": "float16"}), a100(4, 3), tokens(), counts=c
    )
    assert fp16.base_weights >= c.linear_weights_quantizable // 2  # replicated on every GPU
    assert any("quant_storage=null" in note for note in fp16.notes)


def test_ddp_without_zero_holds_a_gradient_bucket_copy(llama70b, llama70b_qlora_counts):
    memory = estimate_memory(
        llama70b.architecture, adapter_config("qlora"), a100(4, 0), tokens(), counts=llama70b_qlora_counts
    )
    assert memory.framework_buffers == memory.gradients
    zero2 = estimate_memory(
        llama70b.architecture, adapter_config("qlora"), a100(4, 2), tokens(), counts=llama70b_qlora_counts
    )
    assert zero2.framework_buffers == 2 * DS_REDUCE_BUCKET_ELEMENTS * 2  # two bf16 buckets (overlap_comm)


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------


def test_gradient_checkpointing_lowers_the_activation_estimate(llama70b, llama70b_qlora_counts):
    arch, c = llama70b.architecture, llama70b_qlora_counts
    on = estimate_memory(arch, adapter_config("qlora"), a100(4, 3, checkpointing=True), tokens(), counts=c)
    off = estimate_memory(arch, adapter_config("qlora"), a100(4, 3, checkpointing=False), tokens(), counts=c)
    assert on.activations == on.activations_with_checkpointing == off.activations_with_checkpointing
    assert off.activations == off.activations_without_checkpointing == on.activations_without_checkpointing
    assert on.activations * 5 < off.activations
    assert on.total < off.total
    # longer sequences and bigger batches cost more
    longer = estimate_memory(arch, adapter_config("qlora"), a100(4, 3), tokens(2, 1024, 1024), counts=c)
    assert longer.activations > 3 * on.activations


def saved_tensor_bytes(model, batch: int, seq: int, vocab: int) -> int:
    """Bytes autograd saves for backward in one forward pass (distinct storages, parameters excluded)."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type != "meta":
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                seen[ptr] = t.untyped_storage().nbytes()
        return t

    torch.manual_seed(0)
    ids = torch.randint(5, vocab - 1, (batch, seq))
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[-1, -7:] = 0  # a padded batch
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    return sum(seen.values())


TINY_ADAPTERS = {
    "lora": lambda: adapter_config("lora"),
    "qlora": lambda: adapter_config("qlora", compute_dtype="float32"),
    "full": lambda: adapter_config("full"),
}


@pytest.mark.parametrize("adapter_name", sorted(TINY_ADAPTERS))
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_formula_matches_what_autograd_saves_in_the_tiny_model(tiny_cache, adapter_name, checkpointing):
    from medtune.modeling.adapters import apply_adapter
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model

    tiny = model_config("tiny")
    adapter = TINY_ADAPTERS[adapter_name]()
    cpu = HardwareConfig(name="cpu", gradient_checkpointing=checkpointing)
    model = load_base_model(resolve_checkpoint(tiny, tiny_cache), tiny, adapter, cpu)
    model = apply_adapter(model, adapter, checkpointing)
    model.train()
    counts = count_parameters(tiny.architecture, adapter)
    prec = precision(adapter, cpu, tiny.dtype, Optimizer.adamw_torch)
    for batch, seq in ((1, 64), (2, 128)):
        measured = saved_tensor_bytes(model, batch, seq, tiny.architecture.vocab_size)
        est = activation_estimate(tiny.architecture, counts, adapter, prec, batch, seq, checkpointing)
        estimated = est.checkpointed if checkpointing else est.saved
        assert abs(estimated - measured) / measured < 0.03, (batch, seq, estimated, measured)


SMALL = {
    "hidden_size": 128,
    "num_layers": 3,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
}


@pytest.mark.parametrize(
    "family,heads,kv_heads", [("llama", 4, 2), ("gpt_neox", 4, 4), ("bloom", 4, 4), ("gptj", 2, 2)]
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_activation_formula_matches_each_family(family, heads, kv_heads, dtype):
    """Small random models of every family; bfloat16 is cast the way DeepSpeed casts a module."""
    import torch
    from transformers import AutoModelForCausalLM

    from medtune.modeling.adapters import apply_adapter
    from medtune.modeling.planner import hf_config

    arch = ArchitectureConfig(model_type=family, num_heads=heads, num_kv_heads=kv_heads, **SMALL)
    bf16 = dtype == "bfloat16"
    hardware = a100(4, 3) if bf16 else HardwareConfig(name="cpu")
    adapters = [
        AdapterConfig(name="lora", kind=AdapterKind.lora, r=8, alpha=8),
        AdapterConfig(
            name="lora_all", kind=AdapterKind.lora, r=16, alpha=16, dropout=0.1, target_modules=["all-linear"]
        ),
        AdapterConfig(name="full", kind=AdapterKind.full),
    ]
    for adapter in adapters:
        torch.manual_seed(0)
        model = apply_adapter(AutoModelForCausalLM.from_config(hf_config(arch)), adapter, gradient_checkpointing=False)
        model = model.to(torch.bfloat16) if bf16 else model
        model.train()
        counts = count_parameters(arch, adapter)
        prec = precision(adapter, hardware, DType(dtype), Optimizer.adamw_torch)
        prec = dataclasses.replace(prec, dropout_mask_bytes=prec.activation_bytes)  # CPU dropout keeps a float mask
        for batch, seq in ((1, 64), (2, 128)):
            measured = saved_tensor_bytes(model, batch, seq, arch.vocab_size)
            estimated = activation_estimate(arch, counts, adapter, prec, batch, seq).saved
            assert abs(estimated - measured) / measured < 0.06, (adapter.name, batch, seq, estimated, measured)


# ----------------------------------------------------------------------------------------------
# verdicts and the whole plan
# ----------------------------------------------------------------------------------------------


def test_70b_qlora_fits_on_four_a100_under_zero3(llama70b, llama70b_qlora_counts):
    memory = estimate_memory(
        llama70b.architecture, adapter_config("qlora"), a100(4, 3), tokens(1, 512, 512), counts=llama70b_qlora_counts
    )
    assert memory.fits is True
    assert memory.margin == memory.device_memory - memory.total > 10 * GIB
    assert memory.device_memory == 80 * GIB and memory.world_size == 4


def test_70b_full_fine_tuning_in_bf16_does_not_fit_on_one_a100(llama70b):
    counts = count_parameters(llama70b.architecture, adapter_config("full"))
    memory = estimate_memory(
        llama70b.architecture,
        adapter_config("full"),
        a100(1, 0),
        tokens(1, 512, 512),
        model_dtype=DType.bfloat16,
        counts=counts,
    )
    assert memory.fits is False and memory.margin < 0
    assert memory.trainable_weights == 2 * LLAMA2_70B_TOTAL  # bf16 weights alone exceed 80 GiB
    assert memory.optimizer_states == 4 * LLAMA2_70B_TOTAL  # torch AdamW keeps m and v in bf16 too


def test_plan_of_a_training_config_counts_and_renders():
    cfg = TrainRunConfig(
        model=model_config("swallow70b"),
        adapter=adapter_config("qlora"),
        hardware=a100(4, 3),
        train=tokens(1, 512, 512),
        dry_run=True,
    )
    result = plan(cfg)  # its time is reported by dry_run and measured by benchmarks/planner_time.py
    assert result.counts.total == estimate_num_parameters(cfg.model.architecture) == 69_159_755_776
    assert result.counts.trainable == LLAMA2_70B_QLORA_TRAINABLE  # the longer vocabulary has no LoRA
    assert result.memory.fits is True
    text = plan_text(result)
    for expected in ("69,159,755,776", "828,375,040", "fits on NVIDIA A100-SXM4-80GB", "total", "ZeRO 3"):
        assert expected in text


def test_cpu_plan_uses_this_hosts_memory():
    tiny = model_config("tiny")
    memory = estimate_memory(
        tiny.architecture, adapter_config("lora"), HardwareConfig(name="cpu"), tokens(4), model_dtype=tiny.dtype
    )
    assert memory.overhead == 0 and memory.fits is True
    assert memory.device_label == "this host's RAM"
    assert memory.total == (
        memory.base_weights
        + memory.trainable_weights
        + memory.optimizer_states
        + memory.step_peak
        + memory.framework_buffers
    )


def test_int8_lora_base_is_a_byte_per_weight(llama70b):
    adapter = AdapterConfig(
        name="lora_int8",
        kind=AdapterKind.lora,
        r=8,
        alpha=16,
        dropout=0.05,
        quantization=QuantizationConfig(method=Quantization.int8),
    )
    counts = count_parameters(llama70b.architecture, adapter)
    memory = estimate_memory(llama70b.architecture, adapter, a100(1, 0), tokens(), counts=counts)
    rows = sum(n * o for (o, _), n in counts.quantizable_shapes)
    assert memory.base_weights == counts.linear_weights_quantizable + 4 * rows + 4 * counts.non_quantizable
