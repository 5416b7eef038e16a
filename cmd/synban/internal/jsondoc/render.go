package jsondoc

// File is one file render prints (path "") or writes (path set).
type File struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Text string `json:"text"`
}

// Render is `render KIND --json`.
type Render struct {
	Kind  string `json:"kind"`
	Files []File `json:"files"`
}

// RenderOf is the files of render kind.
func RenderOf(kind string, files []File) Render {
	return Render{Kind: kind, Files: nonNil(files)}
}
