#!/bin/sh
# Makes tests/data/NotoSansCJK-subset.otf, the small font plotting_test.py
# uses to check that plot_attention picks a font that has the tokens' glyphs
# (CI machines have no CJK font). Needs Debian's fonts-noto-cjk and fontTools
# (installed with matplotlib). The font is under the SIL Open Font License
# 1.1: OFL-NotoSansCJK.txt, next to it.
set -e
python -m fontTools.subset /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc \
    --font-number=0 --text="我爱学习编程你好世界注意力東京한국어" \
    --name-IDs='*' --layout-features='' --no-hinting --desubroutinize \
    --output-file="$(dirname "$0")/NotoSansCJK-subset.otf"
