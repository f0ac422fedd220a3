package userdata

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/textproto"
)

// MergeType is the cloud-init merge rule of the MIME part: when the message
// is combined with other cloud-config parts, lists such as write_files and
// runcmd are appended to rather than replaced, and keys that another part
// already set are kept.
const MergeType = "list(append)+dict(no_replace,recurse_list)+str()"

// PartFilename is the file name of the cloud-config part.
const PartFilename = "nodeprov.cfg"

// mimeMessage wraps a cloud-config document into a multipart/mixed message
// with one text/cloud-config part, the shape cloud-init's own make-mime
// produces. The boundary is derived from the document, so the output is
// deterministic.
func mimeMessage(doc []byte) ([]byte, error) {
	sum := sha256.Sum256(doc)
	boundary := "nodeprov-" + hex.EncodeToString(sum[:12])
	if bytes.Contains(doc, []byte(boundary)) {
		return nil, fmt.Errorf("MIME boundary %s occurs in the document", boundary)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n", boundary)
	b.WriteString("MIME-Version: 1.0\r\n\r\n")
	w := multipart.NewWriter(&b)
	if err := w.SetBoundary(boundary); err != nil {
		return nil, err
	}
	cte := "7bit"
	for _, c := range doc {
		if c >= 0x80 {
			cte = "8bit"
			break
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", `text/cloud-config; charset="utf-8"`)
	h.Set("Content-Transfer-Encoding", cte)
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", PartFilename))
	h.Set("Merge-Type", MergeType)
	part, err := w.CreatePart(h) // writes the header keys sorted
	if err != nil {
		return nil, err
	}
	if _, err := part.Write(doc); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
