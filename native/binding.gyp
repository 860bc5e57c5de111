{
  "targets": [
    {
      "target_name": "captiongate",
      "sources": [
        "src/napi/addon.cc",
        "src/napi/engine_wrap.cc",
        "src/napi/converter_wrap.cc",
        "src/napi/whisper_wrap.cc",
        "src/base/engine_base.cc",
        "src/base/null_recognizer.cc",
        "src/audio/audio_converter.cc",
        "src/audio/vad.cc",
        "src/pocketsphinx/ps_decoder.cc",
        "src/pocketsphinx/ps_recognizer.cc",
        "src/whisper/ct2_model.cc",
        "src/whisper/device.cc",
        "src/whisper/mel.cc",
        "src/whisper/model.cc",
        "src/whisper/tokenizer.cc",
        "src/whisper/whisper_recognizer.cc",
        "src/moonshine/ort.cc",
        "src/moonshine/tokenizer.cc",
        "src/moonshine/onnx_subgraphs.cc",
        "src/moonshine/model.cc",
        "src/moonshine/moonshine_recognizer.cc",
        "src/napi/moonshine_wrap.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node ../scripts/pkg-config.mjs --cflags-only-I pocketsphinx speexdsp openblas)",
        "<!(node ../scripts/onnxruntime-include.mjs)"
      ],
      "libraries": [
        "<!@(node ../scripts/pkg-config.mjs --libs pocketsphinx speexdsp openblas)",
        "-ldl"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "conditions": [
        ["OS=='linux'", {
          "ldflags": ["-Wl,--as-needed"]
        }]
      ]
    }
  ]
}
