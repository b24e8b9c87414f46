#!/bin/sh
# Seeds the decode_block corpus with the real Fabric blocks in fixtures/ (run from the fuzz/ directory).
set -eu
mkdir -p corpus/decode_block
cp ../fixtures/fabric-v2.5/blocks/*.pb corpus/decode_block/
