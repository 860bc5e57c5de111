{
  "targets": [
    {
      "target_name": "captiongate",
      "sources": [
        "src/addon.cc",
        "src/engine.cc",
        "src/ps_decoder.cc",
        "src/vad.cc",
        "src/audio_converter.cc",
        "src/whisper_addon.cc",
        "src/whisper/ct2_model.cc",
        "src/whisper/device.cc",
        "src/whisper/mel.cc",
        "src/whisper/model.cc",
        "src/whisper/stream_engine.cc",
        "src/whisper/tokenizer.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node ../scripts/pkg-config.mjs --cflags-only-I pocketsphinx speexdsp openblas)"
      ],
      "libraries": [
        "<!@(node ../scripts/pkg-config.mjs --libs pocketsphinx speexdsp openblas)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
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
