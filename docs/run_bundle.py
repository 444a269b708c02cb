import json, sys, numpy as np, onnxruntime as ort                       # noqa: E401
from tokenizers import Tokenizer                                         # no code of Model Library needed
bundle, text = sys.argv[1], sys.argv[2]
manifest = json.load(open(f"{bundle}/manifest.json"))
tok = Tokenizer.from_file(f"{bundle}/tokenizer.json")
tok.enable_truncation(manifest["preprocessing"]["max_length"])
enc = tok.encode(text)
feed = {"input_ids": np.array([enc.ids], dtype=np.int64), "attention_mask": np.array([enc.attention_mask], dtype=np.int64)}
probs = ort.InferenceSession(f"{bundle}/model.onnx").run(None, feed)[0][0]
print(manifest["labels"][int(probs.argmax())], f"{probs.max():.3f}")
