# A golden node image (an AMI) built with nodeprov. See README.md in this
# directory for what runs at image build and what runs at first boot.
#
#   nodeprov lock ../k8s-worker.yaml          # pin every download, both arches
#   make -C ../.. build                       # bin/nodeprov for amd64
#   packer init . && packer build -var spec=../k8s-worker.yaml .
#   packer build -var arch=arm64 -var nodeprov_binary=../../bin/nodeprov-arm64 .

packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "arch" {
  type        = string
  default     = "amd64"
  description = "Image architecture: amd64 or arm64. Picks the source AMI, the build instance type and the artifacts nodeprov installs."
  validation {
    condition     = contains(["amd64", "arm64"], var.arch)
    error_message = "The arch variable must be amd64 or arm64."
  }
}

variable "nodeprov_binary" {
  type        = string
  default     = "../../bin/nodeprov"
  description = "nodeprov built for var.arch (make build, or make build GOARCH=arm64 BIN=bin/nodeprov-arm64). It is installed into the image and runs the first boot."
}

variable "spec" {
  type        = string
  default     = "../k8s-worker.yaml"
  description = "The node spec."
}

variable "lock" {
  type        = string
  default     = ""
  description = "The spec's lock file (nodeprov lock SPEC); empty means nodeprov.lock next to the spec. Image builds use pinned digests only."
}

variable "region" {
  type    = string
  default = "eu-central-1"
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "Build instance type; empty means t3.small (amd64) or t4g.small (arm64)."
}

variable "source_ami_name" {
  type        = string
  default     = "debian-12-*"
  description = "Name filter of the source AMI (the architecture is filtered by var.arch)."
}

variable "source_ami_owner" {
  type        = string
  default     = "136693071363"
  description = "Owner of the source AMI: the Debian cloud team's account."
}

variable "ssh_username" {
  type    = string
  default = "admin"
}

variable "ami_name_prefix" {
  type    = string
  default = "nodeprov-node"
}

variable "report_dir" {
  type        = string
  default     = "reports"
  description = "Local directory the JSON reports of apply and seal are downloaded to."
}

locals {
  ami_arch      = { amd64 = "x86_64", arm64 = "arm64" }[var.arch]
  instance_type = var.instance_type != "" ? var.instance_type : { amd64 = "t3.small", arm64 = "t4g.small" }[var.arch]
  lock          = var.lock != "" ? var.lock : "${dirname(var.spec)}/nodeprov.lock"
  spec_sha256   = sha256(file(var.spec))
  stamp         = formatdate("YYYYMMDDhhmmss", timestamp())
  # Everything nodeprov needs on the build instance, in a directory only the
  # SSH user reads (the spec may carry proxy credentials). It is removed
  # before the image is taken; nodeprov keeps its own copy of the spec in
  # /etc/nodeprov (mode 0600) for the first boot.
  work = "/tmp/nodeprov-build"
}

source "amazon-ebs" "node" {
  region        = var.region
  instance_type = local.instance_type
  ssh_username  = var.ssh_username

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      architecture        = local.ami_arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  ami_name        = "${var.ami_name_prefix}-${var.arch}-${local.stamp}"
  ami_description = "nodeprov ${basename(var.spec)} (sha256:${local.spec_sha256}), ${var.arch}; applied offline and sealed, first boot applies the live parts"
  imds_support    = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = {
    Name                   = "${var.ami_name_prefix}-${var.arch}"
    "nodeprov:spec"        = basename(var.spec)
    "nodeprov:spec-sha256" = local.spec_sha256
    "nodeprov:arch"        = var.arch
  }
}

build {
  sources = ["source.amazon-ebs.node"]

  # Upload nodeprov, the spec and the lock into a private directory.
  provisioner "shell" {
    inline = ["install -d -m 0700 ${local.work}"]
  }
  provisioner "file" {
    source      = var.nodeprov_binary
    destination = "${local.work}/nodeprov"
  }
  provisioner "file" {
    source      = var.spec
    destination = "${local.work}/node.yaml"
  }
  provisioner "file" {
    source      = local.lock
    destination = "${local.work}/nodeprov.lock"
  }

  # Image build: apply the spec offline (--image: no live kernel or systemd
  # changes on the build instance; downloads verified against the lock
  # only), install nodeprov, the spec, the lock and the first-boot unit,
  # then seal the image so that every instance gets its own machine-id.
  # The download cache is dropped: first boot finds the artifacts installed
  # and recorded, and needs no network for them.
  provisioner "shell" {
    inline_shebang  = "/bin/sh -eu"
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E {{ .Path }}"
    inline = [
      "chmod 0755 ${local.work}/nodeprov",
      "${local.work}/nodeprov version",
      "${local.work}/nodeprov apply --image --arch ${var.arch} --require-pinned -o json ${local.work}/node.yaml > ${local.work}/apply-report.json",
      "${local.work}/nodeprov seal --clean-cache -o json > ${local.work}/seal-report.json",
    ]
  }

  provisioner "file" {
    direction   = "download"
    source      = "${local.work}/apply-report.json"
    destination = "${var.report_dir}/apply-report-${var.arch}.json"
  }
  provisioner "file" {
    direction   = "download"
    source      = "${local.work}/seal-report.json"
    destination = "${var.report_dir}/seal-report-${var.arch}.json"
  }

  # Leave no build files in the image. cloud-init clean makes the image's
  # instances run cloud-init as on a fresh machine.
  provisioner "shell" {
    inline_shebang  = "/bin/sh -eu"
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E {{ .Path }}"
    inline = [
      "rm -rf ${local.work}",
      "if command -v cloud-init >/dev/null; then cloud-init clean --logs; fi",
    ]
  }

  # A failed apply still hands its report back (the error names the stage
  # and resource).
  error-cleanup-provisioner "file" {
    direction   = "download"
    source      = "${local.work}/apply-report.json"
    destination = "${var.report_dir}/apply-report-${var.arch}.json"
  }
}
