import pytest
import torch

from kdbench.errors import KdbenchError
from kdbench.models.students import layer_selection


def test_layer_map_is_honoured_and_weights_are_bit_identical(teacher_classifier):
    student = layer_selection(teacher_classifier, [0, 5])
    assert student.config.num_hidden_layers == 2
    assert len(student.bert.encoder.layer) == 2
    t_state, s_state = teacher_classifier.state_dict(), student.state_dict()
    for s_idx, t_idx in enumerate([0, 5]):
        prefix_s, prefix_t = f"bert.encoder.layer.{s_idx}.", f"bert.encoder.layer.{t_idx}."
        keys = [k for k in s_state if k.startswith(prefix_s)]
        assert keys
        for k in keys:
            assert torch.equal(s_state[k], t_state[prefix_t + k[len(prefix_s):]]), k
    for k in s_state:
        if ".encoder.layer." not in k:
            assert torch.equal(s_state[k], t_state[k]), k
    # a copy, not a view: training the student must leave the teacher alone
    assert s_state["bert.embeddings.word_embeddings.weight"].data_ptr() != t_state["bert.embeddings.word_embeddings.weight"].data_ptr()


def test_order_of_the_map_is_kept(teacher_classifier):
    student = layer_selection(teacher_classifier, [4, 1, 2])
    w = student.bert.encoder.layer[0].attention.self.query.weight
    assert torch.equal(w, teacher_classifier.bert.encoder.layer[4].attention.self.query.weight)


def test_student_runs_and_differs_from_teacher(teacher_classifier, tokenizer):
    student = layer_selection(teacher_classifier, [0, 5])
    batch = tokenizer(["a fine film", "dull and long"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        s, t = student.eval()(**batch).logits, teacher_classifier.eval()(**batch).logits
    assert s.shape == t.shape == (2, 2)
    assert not torch.allclose(s, t)


def test_out_of_range_layer_is_a_clear_error(teacher_classifier):
    with pytest.raises(KdbenchError, match=r"student.layers \[6\]: the teacher has layers 0..5"):
        layer_selection(teacher_classifier, [0, 6])
