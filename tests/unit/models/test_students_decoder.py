"""layer_selection on a Llama-family decoder (the real SmolLM2-135M-Instruct, 30 layers) and the
uniform DistilBERT / TinyBERT layer maps."""
import pytest
import torch

from kdbench.errors import KdbenchError
from kdbench.models.loading import load_for_head, save_model
from kdbench.models.students import layer_selection, layer_stack, student_layers, uniform_map

MAP = [2, 6, 10, 14, 17, 21, 25, 29]  # TinyBERT's uniform rule for 30 -> 8


@pytest.fixture(scope="module")
def pruned(lm):
    return layer_selection(lm, MAP).eval()


# --- layer maps ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_teacher, n_student, rule, expected", [
    (12, 6, "distilbert", [0, 2, 4, 6, 8, 10]),          # DistilBERT: every other layer
    (12, 4, "distilbert", [0, 3, 6, 9]),
    (12, 6, "tinybert", [1, 3, 5, 7, 9, 11]),            # g(m) = 2m, 1-based
    (12, 4, "tinybert", [2, 5, 8, 11]),                  # TinyBERT-4 from BERT-base: g(m) = 3m
    (6, 2, "tinybert", [2, 5]),
    (30, 8, "distilbert", [0, 3, 7, 11, 15, 18, 22, 26]),  # 30/8 = 3.75, floored
    (30, 8, "tinybert", MAP),
    (5, 5, "distilbert", [0, 1, 2, 3, 4]),
    (5, 5, "tinybert", [0, 1, 2, 3, 4]),
    (7, 1, "tinybert", [6]),
])
def test_uniform_maps_by_hand(n_teacher, n_student, rule, expected):
    got = uniform_map(n_teacher, n_student, rule)
    assert got == expected
    assert len(set(got)) == n_student and all(0 <= i < n_teacher for i in got)


def test_uniform_map_errors():
    with pytest.raises(KdbenchError, match="layer rule 'pkd': known rules are distilbert, tinybert"):
        uniform_map(12, 6, "pkd")
    with pytest.raises(KdbenchError, match="a student of 13 layers needs 1..12"):
        uniform_map(12, 13, "tinybert")


def test_student_layers_explicit_map_wins():
    from kdbench.config import StudentConfig

    assert student_layers(StudentConfig(layers=[0, 29]), 30) == [0, 29]


# --- the pruned decoder ----------------------------------------------------------------------------
def test_pruned_decoder_weights_are_bit_identical_copies(lm, pruned):
    assert len(pruned.model.layers) == pruned.config.num_hidden_layers == len(MAP)
    assert pruned.config.kdbench_layer_map == MAP
    assert lm.config.num_hidden_layers == 30  # the teacher's config is untouched
    t_state, s_state = lm.state_dict(), pruned.state_dict()
    for s_idx, t_idx in enumerate(MAP):
        prefix_s, prefix_t = f"model.layers.{s_idx}.", f"model.layers.{t_idx}."
        keys = [k for k in s_state if k.startswith(prefix_s)]
        assert len(keys) == 9  # q, k, v, o, gate, up, down, two RMSNorms
        for k in keys:
            assert torch.equal(s_state[k], t_state[prefix_t + k[len(prefix_s):]]), k
    outside = [k for k in s_state if not k.startswith("model.layers.")]
    assert set(outside) == {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for k in outside:
        assert torch.equal(s_state[k], t_state[k]), k
    # copies, not views: training the student leaves the teacher alone
    assert pruned.model.embed_tokens.weight.data_ptr() != lm.model.embed_tokens.weight.data_ptr()


def test_tied_embeddings_stay_tied(lm, pruned, tmp_path, tok):
    assert lm.config.tie_word_embeddings and lm.lm_head.weight is lm.model.embed_tokens.weight
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight
    assert sum(p.numel() for p in pruned.parameters()) == 49152 * 576 + 576 + len(MAP) * 3_540_096
    # and after a save and reload, as the pipeline reloads students
    save_model(pruned, tok, tmp_path / "s")
    again = load_for_head(str(tmp_path / "s"), "causal_lm")
    assert again.lm_head.weight is again.model.embed_tokens.weight
    assert again.config.kdbench_layer_map == MAP and again.config.num_hidden_layers == len(MAP)
    assert torch.equal(again.model.layers[3].mlp.up_proj.weight, lm.model.layers[MAP[3]].mlp.up_proj.weight)


def test_layer_indices_follow_the_student_positions(pruned):
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == list(range(len(MAP)))


def test_kv_cache_has_one_entry_per_student_layer(pruned, tok):
    batch = tok(["Question: 2 + 3?\nAnswer:"], return_tensors="pt")
    with torch.inference_mode():
        out = pruned(**batch, use_cache=True)
    assert len(out.past_key_values.layers) == len(MAP)
    assert all(layer.keys.shape[2] == batch["input_ids"].shape[1] for layer in out.past_key_values.layers)


def test_greedy_generation_with_cache_equals_without(pruned, tok):
    """fp32, greedy: the KV-cached decode must reproduce the full recomputation token for token
    (a layer reading another layer's cache slot would diverge at the second token)."""
    batch = tok(["Question: Tom has 3 apples and buys 4 more. How many apples?\nAnswer:"],
                         return_tensors="pt")
    with torch.inference_mode():
        cached = pruned.generate(**batch, max_new_tokens=16, do_sample=False, use_cache=True)
        plain = pruned.generate(**batch, max_new_tokens=16, do_sample=False, use_cache=False)
    assert cached.shape[1] > batch["input_ids"].shape[1] + 1
    assert torch.equal(cached, plain)
    assert pruned.generation_config.eos_token_id == 2 and pruned.generation_config.pad_token_id == 2


def test_pruned_logits_differ_from_teacher_but_full_map_is_the_teacher(lm, pruned, tok):
    batch = tok(["The capital of France is"], return_tensors="pt")
    full = layer_selection(lm, list(range(30))).eval()
    with torch.inference_mode():
        t, s, f = lm(**batch).logits, pruned(**batch).logits, full(**batch).logits
    assert not torch.allclose(s, t, atol=1e-2)
    assert torch.equal(f, t)


def test_out_of_range_decoder_layer_is_a_clear_error(lm):
    with pytest.raises(KdbenchError, match=r"student.layers \[30\]: the teacher has layers 0..29"):
        layer_selection(lm, [0, 30])


# --- per-layer config lists ------------------------------------------------------------------------
def test_per_layer_config_lists_are_cut_to_the_map():
    """A decoder whose config holds one attention type per layer (Qwen2 with sliding-window layers):
    the student's list is the kept layers' entries, and its cached generation still matches."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    types = ["full_attention", "sliding_attention"] * 3
    config = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
                         layer_types=types, tie_word_embeddings=False)
    teacher = Qwen2ForCausalLM(config).eval()
    student = layer_selection(teacher, [5, 0, 3]).eval()
    assert student.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    assert teacher.config.layer_types == types
    assert student.lm_head.weight is not student.model.embed_tokens.weight  # untied stays untied
    assert torch.equal(student.lm_head.weight, teacher.lm_head.weight)
    ids = torch.tensor([[5, 9, 17, 33, 2, 71, 8, 8, 90, 14]])
    with torch.inference_mode():
        a = student.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
        b = student.generate(ids, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(a, b)


# --- the encoder paths still work ------------------------------------------------------------------
def test_embedding_head_encoder_has_a_layer_stack():
    """AutoModel (the embedding head) returns the bare BertModel: its stack is found too."""
    encoder = load_for_head("sentence-transformers/paraphrase-MiniLM-L3-v2", "embedding")
    name, stack = layer_stack(encoder)
    assert name == "encoder.layer" and len(stack) == 3
    student = layer_selection(encoder, uniform_map(3, 1, "tinybert"))
    assert student.config.kdbench_layer_map == [2]
    assert torch.equal(student.encoder.layer[0].output.dense.weight, encoder.encoder.layer[2].output.dense.weight)
